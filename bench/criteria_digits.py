"""Accuracy that each importance criterion keeps on scikit-learn's digits, before and after fine-tuning.

    python bench/criteria_digits.py            # full table (about 10 minutes on 2 cores)
    python bench/criteria_digits.py --quick    # fewer criteria and epochs (a smoke run)

Trains the zoo's digits ResNet (1x16x16 digits, 10 classes), then for every criterion and every
MACs budget (50/20/10% kept, uniform selection landing within 2%) prints top-1 test accuracy:

- one-shot: right after pruning, no data used beyond the criterion's calibration batches;
- +BN: one-shot, then batch-norm statistics re-estimated on the calibration batches (no training);
- FT short / FT long: fine-tuned for a short and a longer budget of epochs;
- '+refit' rows: the criterion, then the least-squares refit of the layers that lose inputs;
- scratch: the same pruned architecture, re-initialised and trained from scratch for the dense
  training epochs plus the long fine-tuning epochs ("Rethinking the Value of Network Pruning");
- torch-pruning: when installed, its MagnitudePruner (group L2) at the same MACs budget.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from prunec.zoo import ZOO
from prunec.zoo.data import Split, digits
from torch import nn
from torch.nn import functional as F

import prunec
from prunec.schedule import recalibrate_norms

CRITERIA = ["l1", "l2", "bn-scale", "lamp", "random", "taylor", "hessian", "activation"]
REFIT = ["l2", "taylor", "activation"]


@dataclass
class Setup:
    """Data, epochs and the calibration set shared by every row."""

    train: Split
    test: Split
    calibration: list[torch.Tensor]
    loss_fn: Callable[[torch.Tensor, int], torch.Tensor]
    dense_epochs: int
    short: int
    long: int


def accuracy(model: nn.Module, split: Split) -> float:
    """Top-1 accuracy in percent."""
    model.eval()
    with torch.no_grad():
        return float((model(split.x).argmax(1) == split.y).float().mean()) * 100


def fit(model: nn.Module, split: Split, epochs: int, lr: float, seed: int = 0) -> nn.Module:
    """SGD with Nesterov momentum and a one-cycle schedule, batch 64."""
    if epochs <= 0:
        return model
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps = epochs * ((len(split.y) + 63) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(split.y), generator=gen)
        for i in range(0, len(perm), 64):
            idx = perm[i: i + 64]
            loss = F.cross_entropy(model(split.x[idx]), split.y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def scores_row(setup: Setup, pruned: nn.Module) -> tuple[float, float, float, float]:
    """One-shot, +BN, short and long fine-tuning accuracy of a pruned model."""
    one_shot = accuracy(pruned, setup.test)
    bn = accuracy(recalibrate_norms(copy.deepcopy(pruned), setup.calibration), setup.test)
    short = accuracy(fit(copy.deepcopy(pruned), setup.train, setup.short, lr=0.01), setup.test)
    long = accuracy(fit(copy.deepcopy(pruned), setup.train, setup.long, lr=0.01), setup.test)
    return one_shot, bn, short, long


def prune_with(dense: nn.Module, setup: Setup, method: str, budget: float) -> prunec.PruneResult:
    """Prune with a criterion (a '+refit' suffix adds the least-squares refit)."""
    criterion, _, refit = method.partition("+")
    return prunec.prune(dense, setup.calibration[0], target=f"macs={budget}", criterion=criterion,
                        calibration=setup.calibration, loss_fn=setup.loss_fn, reconstruct=bool(refit))


def scratch(arch: nn.Module, setup: Setup) -> float:
    """The pruned architecture, re-initialised, trained for dense + long epochs."""
    model = copy.deepcopy(arch)
    torch.manual_seed(1)
    for m in model.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return accuracy(fit(model, setup.train, setup.dense_epochs + setup.long, lr=0.05), setup.test)


def torch_pruning(dense: nn.Module, setup: Setup, budget: float) -> tuple[nn.Module, float] | None:
    """Torch-Pruning's MagnitudePruner (group L2, uniform) at the same MACs budget, if installed."""
    try:
        import torch_pruning as tp
    except ImportError:
        return None
    x = setup.calibration[0][:2]
    base, _ = tp.utils.count_ops_and_params(dense, x)

    def pruned_at(ratio: float) -> tuple[nn.Module, float]:
        model = copy.deepcopy(dense)
        pruner = tp.pruner.MagnitudePruner(model, x, importance=tp.importance.GroupMagnitudeImportance(p=2),
                                           pruning_ratio=ratio, ignored_layers=[model.fc])
        pruner.step()
        macs, _ = tp.utils.count_ops_and_params(model, x)
        return model, macs / base

    lo, hi, best = 0.0, 0.99, None
    for _ in range(14):  # bisection on its per-layer ratio to keep at most `budget` of the MACs
        mid = (lo + hi) / 2
        model, kept = pruned_at(mid)
        if kept <= budget:
            hi, best = mid, (model, kept)
        else:
            lo = mid
    return best


def fmt(values: tuple[float, ...]) -> str:
    """Accuracies as fixed-width columns."""
    return "".join(f"{v:>10.1f}" for v in values)


def main(argv: list[str] | None = None) -> None:
    """Train, prune with every criterion at every budget, print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a few criteria and short budgets")
    ap.add_argument("--budgets", default="0.5,0.2,0.1", help="fractions of MACs kept")
    ap.add_argument("--dense-epochs", type=int, default=20)
    ap.add_argument("--short", type=int, default=2, help="short fine-tuning budget (epochs)")
    ap.add_argument("--long", type=int, default=10, help="long fine-tuning budget (epochs)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (small convs: 1 is fastest)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    criteria, refits = (["l2", "taylor", "activation"], ["l2"]) if args.quick else (CRITERIA, REFIT)
    if args.quick:
        args.dense_epochs, args.long = min(args.dense_epochs, 6), min(args.long, 4)
    budgets = [float(b) for b in args.budgets.split(",")]

    train, test = digits(size=16)
    gen = torch.Generator().manual_seed(1)
    perm = torch.randperm(len(train.y), generator=gen)
    cal_idx = [perm[i * 64: (i + 1) * 64] for i in range(4)]
    setup = Setup(train, test, [train.x[i] for i in cal_idx],
                  lambda out, i: F.cross_entropy(out, train.y[cal_idx[i]]),
                  args.dense_epochs, args.short, args.long)

    t0 = time.time()
    torch.manual_seed(0)
    dense = fit(ZOO["digits_resnet"].build(), train, args.dense_epochs, lr=0.05)
    dense_acc = accuracy(dense, test)
    print(f"digits ResNet: {len(train.y)} train / {len(test.y)} test images, dense trained "
          f"{args.dense_epochs} epochs in {time.time() - t0:.0f}s; calibration: 4 x 64 train images; "
          f"fine-tuning: "
          f"{args.short} and {args.long} epochs at lr 0.01", flush=True)
    print(f"dense top-1: {dense_acc:.1f}%\n")

    head = (f"{'method':<20}{'MACs kept':>10}{'one-shot':>10}{'+BN':>10}{f'FT {args.short}ep':>10}"
            f"{f'FT {args.long}ep':>10}")
    summary: dict[float, dict[str, tuple[float, ...]]] = {}
    for budget in budgets:
        print(f"== {budget:.0%} of MACs ==")
        print(head)
        rows: dict[str, tuple[float, ...]] = {}
        arch = None
        for method in criteria + [f"{c}+refit" for c in refits]:
            t = time.time()
            result = prune_with(dense, setup, method, budget)
            rows[method] = scores_row(setup, result.model)
            arch = result.model if method == "l2" else arch
            took = time.time() - t
            kept = result.report.macs_ratio
            print(f"{method:<20}{kept:>10.3f}{fmt(rows[method])}   ({took:.0f}s)", flush=True)
        if arch is not None:
            acc = scratch(arch, setup)
            rows["scratch"] = (acc,)
            label = f"scratch ({args.dense_epochs + args.long}ep)"
            print(f"{label:<20}{'(l2 arch)':>10}{'':>30}{acc:>10.1f}", flush=True)
        tp_result = torch_pruning(dense, setup, budget)
        if tp_result is None:
            print("torch-pruning       (not installed: pip install torch-pruning)")
        else:
            model, kept = tp_result
            rows["torch-pruning"] = scores_row(setup, model)
            print(f"{'torch-pruning (L2)':<20}{kept:>10.3f}{fmt(rows['torch-pruning'])}", flush=True)
        summary[budget] = rows
        print()

    print("== summary ==")
    for budget, rows in summary.items():
        ft = {m: r[3] for m, r in rows.items() if len(r) == 4}
        best = max(ft, key=ft.__getitem__)
        print(f"{budget:.0%} MACs: best after FT {args.long}ep: {best} {ft[best]:.1f} "
              f"(dense {dense_acc:.1f}, gap {dense_acc - ft[best]:+.1f} points)")
        if "l2" in rows:
            others = [m for m in rows if m not in ("l2", "torch-pruning") and len(rows[m]) == 4]
            for col, label in ((0, "one-shot"), (1, "+BN")):
                margins = ", ".join(f"{m} {rows[m][col] - rows['l2'][col]:+.1f}" for m in others)
                print(f"    {label} margin over l2 ({rows['l2'][col]:.1f}): {margins}")
    print(f"\ntotal {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main(sys.argv[1:])
