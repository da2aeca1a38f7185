"""The train-group-sparse pass: train with a structured-sparse optimizer, then mask the zero groups.

    prunec.prune(model, x, target="macs=0.5", pipeline=[
        TrainGroupSparse(optimizer="hesso", steps=500, loss_fn=my_loss, options={"lr": 0.05}),
        RewriteModulePass(), VerifyPass()])

`loss_fn(model, step)` returns the loss of one training batch. Without it, the pass cycles over
the state's calibration batches and scores them with the state's `loss_fn(output, batch_index)`.
The pass trains the working model in place, leaves it in eval mode (for the rewrite and the
verification) and provides MASKS: exactly the channels the optimizer drove to 0.0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from prunec.passes.optimizers.base import GroupSparseOptimizer
from prunec.passes.optimizers.cric import CRIC
from prunec.passes.optimizers.dhspg import DHSPG
from prunec.passes.optimizers.hesso import HESSO
from prunec.passes.optimizers.hspg import HSPG
from torch import nn

from prunec.analysis.result import Analysis
from prunec.errors import InputError, PassError, TargetError
from prunec.pipeline import Artifact, Pass, PassResult, PruneState, register_pass
from prunec.targets import Target

OPTIMIZERS: dict[str, type[GroupSparseOptimizer]] = {
    "hspg": HSPG, "dhspg": DHSPG, "hesso": HESSO, "cric": CRIC}
"""Name -> optimizer class."""

LossFn = Callable[[nn.Module, int], torch.Tensor]


def make_optimizer(name: str, model: nn.Module, analysis: Analysis, target: str | Target | None,
                   **options: Any) -> GroupSparseOptimizer:
    """Build a structured-sparse optimizer by name ('hspg', 'dhspg', 'hesso', 'cric')."""
    if name not in OPTIMIZERS:
        raise InputError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](model, analysis, target, **options)


def run_training(model: nn.Module, optimizer: GroupSparseOptimizer, loss_fn: LossFn, steps: int,
                 on_step: Callable[[int, float], None] | None = None) -> None:
    """`steps` steps of the usual loop (train mode, zero_grad, backward, step); mode restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.train()
    try:
        for step in range(steps):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model, step)
            loss.backward()
            optimizer.step()
            if on_step is not None:
                on_step(step, float(loss.detach()))
    finally:
        for m, flag in modes:
            m.training = flag


def _from_state(state: PruneState) -> LossFn:
    if not state.calibration or state.loss_fn is None:
        raise InputError("train-group-sparse needs loss_fn=(model, step) -> loss, or calibration batches "
                         "plus loss_fn=(output, batch_index) -> loss passed to prunec.prune")
    batches, score = state.calibration, state.loss_fn

    def loss(model: nn.Module, step: int) -> torch.Tensor:
        i = step % len(batches)
        return score(batches[i].call(model), i)
    return loss


@register_pass("train-group-sparse")
@dataclass(frozen=True)
class TrainGroupSparse(Pass):
    """Train the working model with a structured-sparse optimizer; MASKS = the channels at exactly 0."""

    requires: ClassVar = frozenset({Artifact.ANALYSIS})
    provides: ClassVar = frozenset({Artifact.MASKS})

    optimizer: str = "hesso"
    """'hspg', 'dhspg', 'hesso' or 'cric'."""
    steps: int = 100
    """Optimizer steps to run (the optimizer's schedule is derived from it)."""
    loss_fn: LossFn | None = None
    """loss_fn(model, step) -> loss of one batch; None: the state's calibration batches and loss_fn."""
    target: str | None = None
    """'macs=0.5', 'params=0.5' or 'ratio=0.4'; None: the state's target."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """Optimizer options: lr, variant, momentum, weight_decay, warmup_steps, periods, ..."""

    def run(self, state: PruneState) -> PassResult:
        analysis = state.analysis
        assert analysis is not None  # guaranteed by `requires`
        target = self.target if self.target is not None else state.target
        if target is None and self.optimizer != "hspg":
            raise TargetError(f"train-group-sparse with {self.optimizer!r} needs a target: "
                              "TrainGroupSparse(target='macs=0.5') or prunec.prune(..., target='macs=0.5')")
        loss_fn = self.loss_fn or _from_state(state)
        options = dict(self.options)
        if self.optimizer != "hspg":
            options.setdefault("steps", self.steps)
        opt = make_optimizer(self.optimizer, state.model, analysis, target, **options)
        run_training(state.model, opt, loss_fn, self.steps)
        state.model.eval()  # rewrite and verification compare outputs: BN must use its running stats
        if self.optimizer != "hspg" and not opt.finished:
            raise PassError(f"train-group-sparse: {self.optimizer} did not finish its schedule in "
                            f"{self.steps} steps; raise steps or lower warmup_steps/pruning_steps")
        masks = opt.zero_groups()
        count = sum(len(c) for c in masks.values())
        new = state.replace(masks=masks).note(
            f"train-group-sparse: {self.optimizer} trained {self.steps} steps; {count} channels of "
            f"{len(masks)} groups are exactly zero (planned share kept {opt.planned_ratio():.3f})")
        return PassResult(new, changed=bool(masks))
