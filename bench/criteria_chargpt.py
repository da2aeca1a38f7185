"""Validation perplexity of the zoo's character GPT with its MLP width and heads pruned.

    python bench/criteria_chargpt.py            # about 10 minutes on 2 cores
    python bench/criteria_chargpt.py --quick

Trains `char_gpt` (2 layers, dim 64, 4 heads) on Python's standard-library source, then keeps 50%
and 25% of every MLP's hidden units and of every layer's heads (the residual stream is left whole:
`ignore=["tok"]` pins the embedding's output), with several criteria. Prints validation perplexity
one-shot, after a short and after a longer fine-tuning budget (steps of batch 32 x 64 characters).
The pruned model comes back as a `CharGPT` (the attention fixers update its head count); every batch
here has the example batch's shape all the same, so the figures compare like with like.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time

import torch
from torch import nn
from torch.nn import functional as F

import prunec
from prunec.zoo import ZOO
from prunec.zoo.data import CharCorpus, char_corpus

BATCH, BLOCK = 32, 64


def batches(corpus: CharCorpus, split: str, n: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`n` random (inputs, targets) windows of the split."""
    gen = torch.Generator().manual_seed(seed)
    return [corpus.batch(split, BATCH, BLOCK, gen) for _ in range(n)]


def perplexity(model: nn.Module, val: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """exp of the mean next-character cross-entropy."""
    model.eval()
    with torch.no_grad():
        loss = sum(float(F.cross_entropy(model(x).flatten(0, 1), y.flatten())) for x, y in val) / len(val)
    return math.exp(loss)


def train(model: nn.Module, corpus: CharCorpus, steps: int, lr: float, seed: int) -> nn.Module:
    """AdamW with a cosine schedule."""
    if steps <= 0:
        return model
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        x, y = corpus.batch("train", BATCH, BLOCK, gen)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


def main(argv: list[str] | None = None) -> None:
    """Train, prune at 50% and 25% of MLP width and heads, print perplexities."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int, default=3000, help="dense training steps")
    ap.add_argument("--short", type=int, default=100, help="short fine-tuning budget (steps)")
    ap.add_argument("--long", type=int, default=600, help="long fine-tuning budget (steps)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.steps, args.short, args.long = 600, 50, 150
    corpus = char_corpus(max_chars=1_000_000)
    val = batches(corpus, "val", 20, seed=7)
    calibration = batches(corpus, "train", 4, seed=3)
    cal_x = [x for x, _ in calibration]

    def loss_fn(out: torch.Tensor, i: int) -> torch.Tensor:
        return F.cross_entropy(out.flatten(0, 1), calibration[i][1].flatten())

    t0 = time.time()
    torch.manual_seed(0)
    dense = train(ZOO["char_gpt"].build(), corpus, args.steps, lr=3e-3, seed=0)
    print(f"char GPT: {corpus.vocab_size} symbols, {len(corpus.train):,} train characters; dense trained "
          f"{args.steps} steps of {BATCH}x{BLOCK} in {time.time() - t0:.0f}s; fine-tuning {args.short} and "
          f"{args.long} steps at lr 1e-3")
    print(f"dense validation perplexity: {perplexity(dense, val):.3f}\n")
    methods = ["l2", "taylor", "activation", "l2+refit", "activation+refit"]
    if args.quick:
        methods = ["l2", "taylor", "l2+refit"]
    for keep in (0.5, 0.25):
        print(f"== {keep:.0%} of MLP width and heads kept ==")
        print(f"{'method':<20}{'params':>8}{'one-shot':>12}{f'FT {args.short}':>10}{f'FT {args.long}':>10}")
        for method in methods:
            criterion, _, refit = method.partition("+")
            result = prunec.prune(dense, cal_x[0], ratio=1 - keep, criterion=criterion, ignore=["tok"],
                                  calibration=cal_x, loss_fn=loss_fn, reconstruct=bool(refit))
            pruned = result.model
            one = perplexity(pruned, val)
            short = perplexity(train(copy.deepcopy(pruned), corpus, args.short, lr=1e-3, seed=1), val)
            long = perplexity(train(copy.deepcopy(pruned), corpus, args.long, lr=1e-3, seed=1), val)
            print(f"{method:<20}{result.report.params_ratio:>8.3f}{one:>12.4g}{short:>10.3f}{long:>10.3f}",
                  flush=True)
        print()
    print(f"total {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main(sys.argv[1:])
