"""Iterative pruning: reach a target in N steps, with a callback (fine-tuning, say) between them.

Step i aims at the i-th geometric fraction of the way: for `macs=0.25` in 2 steps, 0.5 of the
original MACs after step 1 and 0.25 after step 2. Each step is an ordinary `prunec.prune` of the
model the previous step returned, re-traced and re-scored (so scores see fine-tuned weights); the
callback `callback(model, step)` runs after every step (steps count from 1).

The result's `removed` lists every step's removed groups with member slices translated to the
ORIGINAL model's numbering, and `steps` holds each step's own PruneResult. Without a callback the
zeroed-copy contract holds end to end; with one, it holds step by step (fine-tuning changes the
weights the later steps start from).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from prunec.analysis.groups import RemovedGroup, Slice
from prunec.errors import TargetError
from prunec.targets import Target


def step_targets(target: Target, steps: int) -> list[float]:
    """Fraction of the ORIGINAL quantity to keep after each step (ratio: fraction removed so far)."""
    if target.kind == "ratio":
        return [1.0 - (1.0 - target.value) ** (i / steps) for i in range(1, steps + 1)]
    return [target.value ** (i / steps) for i in range(1, steps + 1)]


def _relative(target: Target, goal: float, done: float) -> Target:
    """The target for one step, relative to the model that step starts from."""
    if target.kind == "ratio":
        return Target("ratio", min(0.999, max(0.0, 1.0 - (1.0 - goal) / (1.0 - done))))
    return Target(target.kind, min(1.0, max(1e-6, goal / done)))


class _Numbering:
    """Original indices still present along each (parameter, axis), updated step by step."""

    def __init__(self, model: nn.Module) -> None:
        self.kept = {name: [np.arange(n) for n in t.shape] for name, t in model.state_dict().items()}

    def translate(self, removed: tuple[RemovedGroup, ...]) -> list[RemovedGroup]:
        """The step's removed groups in original numbering; then forget those indices."""
        out, drops = [], {}
        for g in removed:
            members = []
            for s in g.members:
                axes = self.kept.get(s.param)
                if axes is None or s.dim >= len(axes):
                    members.append(s)
                    continue
                orig = axes[s.dim][np.asarray(s.indices, dtype=np.int64)]
                members.append(Slice(s.param, s.dim, tuple(int(i) for i in orig)))
                drops.setdefault((s.param, s.dim), set()).update(int(i) for i in s.indices)
            out.append(dataclasses.replace(g, members=tuple(members)))
        for (param, dim), idx in drops.items():
            axis = self.kept[param][dim]
            self.kept[param][dim] = np.delete(axis, sorted(idx))
        return out


def prune_iteratively(model: nn.Module, example_inputs: Any, target: Target, *, steps: int,
                      callback: Callable[[nn.Module, int], None] | None = None, inplace: bool = False,
                      **prune_kwargs: Any) -> Any:
    """Prune towards `target` in `steps` steps, calling `callback(model, step)` after each.

    Returns a PruneResult for the final model: `removed` in the original numbering, the report's
    "before" figures from the original model, and `steps` with every step's own result.
    """
    from prunec.api import prune

    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise TargetError(f"steps must be a positive integer (the number of pruning rounds), got {steps!r}")
    if callback is not None and not callable(callback):
        raise TargetError(f"callback must be callable as callback(model, step), got "
                          f"{type(callback).__name__}")
    current = model if inplace else copy.deepcopy(model)
    numbering = _Numbering(current)
    goals = step_targets(target, steps)
    results: list[Any] = []
    removed: list[RemovedGroup] = []
    done = 0.0 if target.kind == "ratio" else 1.0
    for i, goal in enumerate(goals, start=1):
        result = prune(current, example_inputs, target=_relative(target, goal, done), inplace=True,
                       **prune_kwargs)
        removed += numbering.translate(result.removed)
        current = result.model
        if callback is not None:
            callback(current, i)
        results.append(result)
        done = _achieved(target, results, goal)
    return _combine(results, tuple(removed))


def _achieved(target: Target, results: list[Any], goal: float) -> float:
    first, last = results[0].report, results[-1].report
    if target.kind == "macs":
        return last.macs_after / first.macs_before if first.macs_before else 1.0
    if target.kind == "params":
        return last.params_after / first.params_before if first.params_before else 1.0
    return goal  # ratio and latency: each step is taken to land on its goal


def _combine(results: list[Any], removed: tuple[RemovedGroup, ...]) -> Any:
    first, last = results[0], results[-1]
    notes = tuple(f"step {i}: {n}" for i, r in enumerate(results, start=1) for n in r.report.notes)
    report = dataclasses.replace(
        last.report, params_before=first.report.params_before, macs_before=first.report.macs_before,
        groups_pruned=sum(r.report.groups_pruned for r in results),
        channels_total=first.report.channels_total,
        channels_removed=sum(r.report.channels_removed for r in results), notes=notes)
    return dataclasses.replace(last, removed=removed, report=report, analysis=first.analysis,
                               steps=tuple(results), source_state=first.source_state)


def recalibrate_norms(model: nn.Module, batches: Any) -> nn.Module:
    """Re-estimate every BatchNorm's running statistics on `batches` (no weight changes).

    Pruning shifts the statistics of the activations that batch norms see; re-estimating them on a
    few batches of real inputs restores much of a one-shot prune's accuracy without training. Use
    it as a step callback, or after `prunec.prune`. Returns `model`, in eval mode.
    """
    from torch.nn.modules.batchnorm import _BatchNorm

    from prunec.inputs import ExampleInputs

    norms = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    saved = [(m, m.momentum) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
    model.train()
    try:
        with torch.no_grad():
            for batch in batches:
                ExampleInputs.from_user(batch).call(model)
    finally:
        for m, momentum in saved:
            m.momentum = momentum
        model.eval()
    return model
