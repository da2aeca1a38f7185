"""Train once vs. prune-then-fine-tune, on real data (nothing is downloaded).

    python bench/train_once.py                      # everything (about an hour on 2 busy cores)
    python bench/train_once.py --only digits --seeds 3 --epochs 12
    python bench/train_once.py --only gpt --gpt-steps 1500
    python bench/train_once.py --only targets      # MACs requested vs compiled
    python bench/train_once.py --only overhead     # ms per step vs torch.optim.SGD

(a) digits_resnet on scikit-learn's digits (top-1 on the 449 held-out images), at 50% and 30% MACs.
(b) char_gpt on Python standard-library source (validation perplexity), at 50% MACs.

Rows: the dense model; HESSO, HESSO+CRIC and DHSPG train-once (the compiled subnet's accuracy,
which must equal the trained full model's); one-shot L2 pruning of a dense model trained for half
the epochs, fine-tuned for the other half (the same total number of epochs). "targets" asks HESSO
for 50% / 20% / 10% MACs and prints what the compiled model keeps.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from prunec.passes.optimizers import make_optimizer
from prunec.zoo.char_gpt import CharGPT
from prunec.zoo.data import char_corpus, digits
from prunec.zoo.digits_net import DigitsResNet
from torch import nn
from torch.nn import functional as F

import prunec

BATCH = 64
LR, MOMENTUM, WD = 0.05, 0.9, 5e-4


@dataclass
class Row:
    """One measured configuration."""

    task: str
    method: str
    target: str
    macs: float
    params: float
    metric: float
    trained_metric: float | None
    seconds: float


# ---- digits -------------------------------------------------------------------------------------

def digits_epochs(model: nn.Module, opt: torch.optim.Optimizer, epochs: int, seed: int) -> None:
    train, _ = digits()
    steps_per_epoch = len(train.y) // BATCH
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(train.y), generator=gen)
        for i in range(steps_per_epoch):
            idx = perm[i * BATCH:(i + 1) * BATCH]
            loss = F.cross_entropy(model(train.x[idx]), train.y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()


def top1(model: nn.Module) -> float:
    _, test = digits()
    model.eval()
    with torch.no_grad():
        return 100.0 * float((model(test.x).argmax(1) == test.y).float().mean())


def digits_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return DigitsResNet().train()


def digits_example() -> torch.Tensor:
    return digits()[1].x[:8]


def digits_dense(seed: int, epochs: int) -> tuple[nn.Module, float]:
    model = digits_model(seed)
    t = time.time()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, nesterov=True, weight_decay=WD)
    digits_epochs(model, opt, epochs, seed)
    return model, time.time() - t


def digits_train_once(seed: int, epochs: int, algo: str, target: str, **extra: object) -> Row:
    model = digits_model(seed)
    x = digits_example()
    t = time.time()
    analysis = prunec.analyze(model, x)
    steps = epochs * (len(digits()[0].y) // BATCH)
    opt = make_optimizer(algo, model, analysis, target, steps=steps, lr=LR, momentum=MOMENTUM, nesterov=True,
                         weight_decay=WD, **extra)
    digits_epochs(model, opt, epochs, seed)
    compiled, _ = prunec.compile_zero_groups(model, x)
    seconds = time.time() - t
    rep = compiled.report
    name = {"hesso": "HESSO", "cric": "HESSO+CRIC", "dhspg": "DHSPG"}[algo]
    return Row("digits", f"{name} train-once", target, rep.macs_ratio, rep.params_ratio, top1(compiled.model),
               top1(model), seconds)


def digits_l2(seed: int, epochs: int, target: str, half: nn.Module, half_seconds: float) -> Row:
    x = digits_example()
    t = time.time()
    pruned = prunec.prune(half, x, target=target, criterion="l2")
    model = pruned.model.train()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, nesterov=True, weight_decay=WD)
    digits_epochs(model, opt, epochs - epochs // 2, seed + 1)
    rep = pruned.report
    return Row("digits", "L2 one-shot + fine-tune", target, rep.macs_ratio, rep.params_ratio, top1(model),
               None, half_seconds + time.time() - t)


def bench_digits(seeds: int, epochs: int, log: Callable[[str], None]) -> list[Row]:
    rows: list[Row] = []
    for seed in range(seeds):
        dense, secs = digits_dense(seed, epochs)
        rows.append(Row("digits", "dense", "-", 1.0, 1.0, top1(dense), None, secs))
        log(f"seed {seed}: dense {rows[-1].metric:.2f}")
        half, half_secs = digits_dense(seed, epochs // 2)
        for target in ("macs=0.5", "macs=0.3"):
            runs = [("hesso", {}), ("dhspg", {})]
            if target == "macs=0.5":
                cycle = max(1, epochs * (len(digits()[0].y) // BATCH) // 12)
                runs.insert(1, ("cric", {"warmup_steps": cycle, "max_cycles": 2, "cycle_steps": cycle,
                                         "pruning_steps": 4 * cycle}))
            for algo, extra in runs:
                rows.append(digits_train_once(seed, epochs, algo, target, **extra))
                last = rows[-1]
                log(f"seed {seed}: {last.method} {target} {last.metric:.2f} (macs {last.macs:.3f})")
            rows.append(digits_l2(seed, epochs, target, half, half_secs))
            log(f"seed {seed}: L2+FT {target} {rows[-1].metric:.2f}")
    return rows


def bench_targets(log: Callable[[str], None]) -> list[tuple[str, float, float]]:
    out = []
    for value in (0.5, 0.2, 0.1):
        row = digits_train_once(0, 2, "hesso", f"macs={value}")
        out.append((f"macs={value}", row.macs, row.params))
        log(f"target macs={value}: compiled keeps {row.macs:.4f} of the MACs")
    return out


def bench_overhead(log: Callable[[str], None]) -> list[tuple[str, float]]:
    """Milliseconds per training step (forward, backward, update) on digits_resnet, batch 64."""
    train, _ = digits()
    x, y = train.x[:BATCH], train.y[:BATCH]

    def per_step(model: nn.Module, opt: torch.optim.Optimizer, steps: int) -> float:
        t = time.perf_counter()
        for _ in range(steps):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return 1000 * (time.perf_counter() - t) / steps

    out = []
    model = digits_model(0)
    sgd = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, nesterov=True, weight_decay=WD)
    per_step(model, sgd, 5)
    out.append(("torch.optim.SGD", per_step(model, sgd, 40)))
    for algo in ("hesso", "dhspg"):
        model = digits_model(0)
        analysis = prunec.analyze(model, digits_example())
        opt = make_optimizer(algo, model, analysis, "macs=0.5", warmup_steps=40, pruning_steps=40, lr=LR,
                             momentum=MOMENTUM, nesterov=True, weight_decay=WD)
        for phase in ("warm-up", "driving to zero", "zeros fixed"):
            out.append((f"{algo.upper()} {phase}", per_step(model, opt, 40)))
    for name, ms in out:
        log(f"{name}: {ms:.1f} ms/step")
    return out


# ---- char-GPT -------------------------------------------------------------------------------------

GPT_BATCH, BLOCK = 32, 64


def gpt_batches(corpus, split: str, seed: int):
    gen = torch.Generator().manual_seed(seed)
    while True:
        yield corpus.batch(split, GPT_BATCH, BLOCK, gen)


def perplexity(model: nn.Module, corpus) -> float:
    model.eval()
    batches = gpt_batches(corpus, "val", 123)
    total = 0.0
    with torch.no_grad():
        for _ in range(24):
            x, y = next(batches)
            logits = model(x)
            total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)))
    return math.exp(total / 24)


def gpt_train(model: nn.Module, opt: torch.optim.Optimizer, corpus, steps: int, seed: int) -> None:
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    batches = gpt_batches(corpus, "train", seed)
    model.train()
    for _ in range(steps):
        x, y = next(batches)
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
    model.eval()


def gpt_model(seed: int, vocab: int) -> nn.Module:
    torch.manual_seed(seed)
    return CharGPT(vocab=vocab).train()


def bench_gpt(steps: int, log: Callable[[str], None]) -> list[Row]:
    corpus = char_corpus(1_000_000)
    example = next(gpt_batches(corpus, "val", 7))[0]
    rows: list[Row] = []
    adam = dict(lr=3e-3, betas=(0.9, 0.95), weight_decay=0.01)
    t = time.time()
    dense = gpt_model(0, corpus.vocab_size)
    gpt_train(dense, torch.optim.AdamW(dense.parameters(), **adam), corpus, steps, 0)
    rows.append(Row("char-gpt", "dense", "-", 1.0, 1.0, perplexity(dense, corpus), None, time.time() - t))
    log(f"gpt dense ppl {rows[-1].metric:.3f}")
    for algo in ("hesso", "dhspg"):
        t = time.time()
        model = gpt_model(0, corpus.vocab_size)
        opt = make_optimizer(algo, model, prunec.analyze(model, example), "macs=0.5", steps=steps,
                             variant="adamw", **adam)
        gpt_train(model, opt, corpus, steps, 0)
        compiled, _ = prunec.compile_zero_groups(model, example)
        rep = compiled.report
        rows.append(Row("char-gpt", f"{algo.upper()} train-once", "macs=0.5", rep.macs_ratio,
                        rep.params_ratio, perplexity(compiled.model, corpus), perplexity(model, corpus),
                        time.time() - t))
        log(f"gpt {algo} ppl {rows[-1].metric:.3f} (trained {rows[-1].trained_metric:.3f})")
    t = time.time()
    half = gpt_model(0, corpus.vocab_size)
    gpt_train(half, torch.optim.AdamW(half.parameters(), **adam), corpus, steps // 2, 0)
    pruned = prunec.prune(half, example, target="macs=0.5", criterion="l2")
    model = pruned.model
    gpt_train(model, torch.optim.AdamW(model.parameters(), **adam), corpus, steps - steps // 2, 1)
    rows.append(Row("char-gpt", "L2 one-shot + fine-tune", "macs=0.5", pruned.report.macs_ratio,
                    pruned.report.params_ratio, perplexity(model, corpus), None, time.time() - t))
    log(f"gpt l2+ft ppl {rows[-1].metric:.3f}")
    return rows


# ---- table ------------------------------------------------------------------------------------------

def summarize(rows: list[Row]) -> None:
    keys: list[tuple[str, str, str]] = []
    for r in rows:
        if (r.task, r.method, r.target) not in keys:
            keys.append((r.task, r.method, r.target))
    print(f"{'task':9} {'method':26} {'target':9} {'MACs kept':>9} {'params kept':>11} {'metric':>16} "
          f"{'trained':>8} {'seeds':>5} {'time s':>7}")
    for task, method, target in keys:
        group = [r for r in rows if (r.task, r.method, r.target) == (task, method, target)]
        values = [r.metric for r in group]
        mean = statistics.fmean(values)
        spread = f"±{statistics.stdev(values):.2f}" if len(values) > 1 else ""
        trained = [r.trained_metric for r in group if r.trained_metric is not None]
        label = "top-1 %" if task == "digits" else "ppl"
        print(f"{task:9} {method:26} {target:9} {statistics.fmean(r.macs for r in group):9.3f} "
              f"{statistics.fmean(r.params for r in group):11.3f} {mean:8.2f}{spread:6} {label:>2} "
              f"{(f'{statistics.fmean(trained):.2f}' if trained else '-'):>8} {len(group):5d} "
              f"{statistics.fmean(r.seconds for r in group):7.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("digits", "gpt", "targets", "overhead"), default=None)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--gpt-steps", type=int, default=1500)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    def log(text: str) -> None:
        print(f"  [{time.strftime('%H:%M:%S')}] {text}", flush=True)

    rows: list[Row] = []
    targets: list[tuple[str, float, float]] = []
    overhead: list[tuple[str, float]] = []
    if args.only in (None, "digits"):
        rows += bench_digits(args.seeds, args.epochs, log)
    if args.only in (None, "gpt"):
        rows += bench_gpt(args.gpt_steps, log)
    if args.only in (None, "targets"):
        targets = bench_targets(log)
    if args.only in (None, "overhead"):
        overhead = bench_overhead(log)
    if rows:
        print(f"\ntrain once vs L2 + fine-tune (digits: {args.epochs} epochs, batch {BATCH}; "
              f"char-gpt: {args.gpt_steps} steps of {GPT_BATCH}x{BLOCK}); metric of the compiled model, "
              "'trained' = the full trained model before compiling")
        summarize(rows)
    if targets:
        print("\nMACs target -> compiled model (HESSO, digits_resnet, 2 epochs)")
        print(f"{'requested':10} {'MACs kept':>9} {'params kept':>11}")
        for req, macs, params in targets:
            print(f"{req:10} {macs:9.4f} {params:11.4f}")
    if overhead:
        print("\noptimizer step cost (digits_resnet, batch 64, forward + backward + step)")
        print(f"{'optimizer / phase':30} {'ms/step':>8} {'vs SGD':>7}")
        for name, ms in overhead:
            print(f"{name:30} {ms:8.1f} {ms / overhead[0][1]:7.2f}")


if __name__ == "__main__":
    main()
