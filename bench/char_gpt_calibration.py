"""Calibration-aware pruning of a character GPT: activation-based scores vs weight magnitude.

Trains `char_gpt` (prunec.zoo) for a few minutes on Python's own standard-library source, then
removes 25% and 50% of its MLP width and attention heads (`kinds=("mlp", "heads")`), scored two ways:

- l2: the weight norm of each channel's slices (prunec's default criterion, no data);
- activation: prunec's built-in "activation" criterion (passes/criteria/activation.py): channel c
  scores ||W[:, c]|| x the calibration RMS of its input, summed over the layers that read it
  (Wanda-style, structured as in CFSP), from a few calibration batches.

Prints validation perplexity before and after (no fine-tuning after pruning).

    python bench/char_gpt_calibration.py --minutes 3
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from prunec.zoo.char_gpt import CharGPT
from prunec.zoo.data import CharCorpus, char_corpus
from torch import nn
from torch.nn import functional

import prunec

BLOCK = 64


def perplexity(model: nn.Module, corpus: CharCorpus, batches: int = 40) -> float:
    """exp(mean cross-entropy) on fixed validation windows."""
    gen = torch.Generator().manual_seed(123)
    total = 0.0
    model.eval()
    with torch.no_grad():
        for _ in range(batches):
            x, y = corpus.batch("val", 32, BLOCK, gen)
            total += functional.cross_entropy(model(x).flatten(0, 1), y.flatten()).item()
    return math.exp(total / batches)


def train(corpus: CharCorpus, minutes: float, dim: int, heads: int, layers: int) -> tuple[CharGPT, int]:
    """Train until the time budget is spent; return the model and the number of steps."""
    torch.manual_seed(0)
    model = CharGPT(vocab=corpus.vocab_size, dim=dim, heads=heads, layers=layers, block=BLOCK)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    gen = torch.Generator().manual_seed(0)
    end = time.perf_counter() + minutes * 60
    steps = 0
    model.train()
    while time.perf_counter() < end:
        x, y = corpus.batch("train", 32, BLOCK, gen)
        loss = functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
    return model.eval(), steps


def main() -> None:
    """Train, prune with both criteria at two ratios, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--dim", type=int, default=96)
    parser.add_argument("--heads", type=int, default=6)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 is fastest on a busy 2-core machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    corpus = char_corpus(1_000_000)
    model, steps = train(corpus, args.minutes, args.dim, args.heads, args.layers)
    gen = torch.Generator().manual_seed(7)
    calibration = [corpus.batch("train", 16, BLOCK, gen)[0] for _ in range(8)]
    example = calibration[0][:2]
    base_ppl = perplexity(model, corpus)
    print(f"char_gpt: dim {args.dim}, {args.heads} heads x {args.layers} layers, "
          f"{prunec.count_params(model) / 1e3:.0f}K params, trained {steps} steps ({args.minutes:g} min) "
          f"on {len(corpus.train) / 1e6:.1f}M chars of stdlib source")
    print(f"{'removed':>8} {'criterion':>11} {'heads kept':>10} {'MLP kept':>9} {'params':>8} {'val ppl':>8}")
    print(f"{'0%':>8} {'-':>11} {args.heads:>10} {4 * args.dim:>9} {prunec.count_params(model) / 1e3:>7.0f}K "
          f"{base_ppl:>8.3f}")
    for ratio in (0.25, 0.5):
        for criterion in ("l2", "activation"):
            result = prunec.prune(model, example, ratio=ratio, kinds=("mlp", "heads"), criterion=criterion,
                                  calibration=calibration)
            pruned = result.model
            attn = pruned.blocks[0].attn  # type: ignore[index]
            mlp = pruned.blocks[0].fc  # type: ignore[index]
            print(f"{ratio:>8.0%} {criterion:>11} {attn.heads:>10} {mlp.out_features:>9} "
                  f"{prunec.count_params(pruned) / 1e3:>7.0f}K {perplexity(pruned, corpus):>8.3f}")
    print("heads/MLP kept are per layer; the pruned models are CharGPT instances (verified by prunec)")


if __name__ == "__main__":
    main()
