"""GroupSparseOptimizer: the torch.optim.Optimizer every structured-sparse optimizer builds on.

It owns (1) the base update, SGD (momentum, dampening, Nesterov), Adam or AdamW, chosen per
parameter group, (2) the channel units and the target budget, (3) the bookkeeping of which units
are fixed at zero, and (4) a state_dict that resumes training bit for bit.

Subclasses (HSPG, DHSPG, HESSO, CRIC) implement two hooks around the base update:
`_prepare()` (decide which units are redundant, from weights and gradients) and `_project()`
(shrink or project redundant units after the update). Units in `pruned` are set back to exactly
0.0 after every step, their optimizer state with them.

Under DistributedDataParallel every rank holds the same weights and all-reduced gradients, so
every rank reaches the same decisions; with `sync=True` (default) each decision is additionally
broadcast from rank 0, so ranks can never drift apart.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.distributed as dist
from prunec.passes.optimizers.budget import Budget
from prunec.passes.optimizers.saliency import UnitStats, check_criteria, saliency
from prunec.passes.optimizers.units import ChannelUnits
from torch import nn
from torch.optim import Optimizer

from prunec.analysis.result import Analysis
from prunec.errors import InputError
from prunec.targets import Target

VARIANTS = ("sgd", "adam", "adamw")


@dataclass(frozen=True)
class Schedule:
    """When redundant units are chosen and driven to zero, in optimizer steps.

    Steps [0, warmup) train normally; then `periods` periods of `period` steps each drive their
    share of the redundant units to exactly zero; from `end` on, the zeros are fixed.
    """

    warmup: int
    period: int
    periods: int

    @property
    def end(self) -> int:
        """First step after the last period."""
        return self.warmup + self.period * self.periods

    def period_at(self, step: int) -> int | None:
        """Index of the period that `step` falls in (None before or after the periods)."""
        if step < self.warmup or step >= self.end:
            return None
        return (step - self.warmup) // self.period

    @classmethod
    def make(cls, steps: int | None, warmup_steps: int | None, pruning_steps: int | None,
             periods: int) -> Schedule:
        """Defaults: warm up for 10% of `steps`, then drive units to zero over the next 40%."""
        if not isinstance(periods, int) or periods < 1:
            raise InputError(f"periods must be a positive integer, got {periods!r}")
        if steps is None and (warmup_steps is None or pruning_steps is None):
            raise InputError("give steps= (the total number of optimizer steps you will run), or both "
                             "warmup_steps= and pruning_steps=")
        warmup = round(0.1 * steps) if warmup_steps is None else int(warmup_steps)  # type: ignore[operator]
        span = round(0.4 * steps) if pruning_steps is None else int(pruning_steps)  # type: ignore[operator]
        if warmup < 0:
            raise InputError(f"warmup_steps must be >= 0, got {warmup}")
        if span < periods:
            raise InputError(f"pruning_steps={span} must be at least periods={periods} (one step per period)")
        sched = cls(warmup, span // periods, periods)
        if steps is not None and sched.end > steps:
            raise InputError(f"warmup_steps + pruning_steps = {sched.end} exceeds steps={steps}: the "
                             "redundant groups would not reach zero before training ends")
        return sched


class GroupSparseOptimizer(Optimizer):
    """Base of the structured-sparse optimizers (not used directly).

    Args:
        model: the model; its parameters are trained (or those in `params`).
        analysis: `prunec.analyze(model, example_inputs)`.
        target: 'macs=0.5' / 'params=0.5' (share of the compiled model to keep) or 'ratio=0.4'
            (fraction of all prunable channels to zero).
        params: parameter groups as for any torch optimizer (default: all model parameters);
            each group may set its own lr, weight_decay, momentum, betas, variant.
        lr, variant, momentum, dampening, nesterov, betas, eps, weight_decay: the base optimizer
            ('sgd', 'adam' or 'adamw') and its defaults.
        criteria: saliency criterion weights (see `saliency.py`); default: an equal mix.
        allocation: 'uniform' (every group loses the same fraction, its least salient channels) or
            'global' (one ranking across groups by saliency per unit of cost); see `budget.py`.
        cost_power: how strongly a unit's MACs/params cost speeds its removal ('global' only).
        max_group_ratio: most of one group's channels the 'global' allocation may remove.
        score_steps: gradient statistics are averaged over this many steps before each decision.
        sync: broadcast every decision from rank 0 under torch.distributed.

    """

    algorithm: ClassVar[str] = ""

    def __init__(self, model: nn.Module, analysis: Analysis, target: str | Target | None, *,
                 params: Iterable[Any] | None = None, lr: float = 1e-3, variant: str = "sgd",
                 momentum: float = 0.0, dampening: float = 0.0, nesterov: bool = False,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 criteria: Mapping[str, float] | None = None, allocation: str = "uniform",
                 cost_power: float = 1.0, max_group_ratio: float = 0.9, score_steps: int = 8,
                 sync: bool = True) -> None:
        if variant not in VARIANTS:
            raise InputError(f"variant={variant!r}; use one of {', '.join(VARIANTS)}")
        if lr < 0:
            raise InputError(f"lr must be >= 0, got {lr}")
        defaults = dict(lr=lr, variant=variant, momentum=momentum, dampening=dampening, nesterov=nesterov,
                        betas=betas, eps=eps, weight_decay=weight_decay)
        super().__init__(list(model.parameters()) if params is None else params, defaults)
        for group in self.param_groups:
            if group["variant"] not in VARIANTS:
                raise InputError(f"a parameter group has variant={group['variant']!r}; use one of "
                                 f"{', '.join(VARIANTS)}")
        self.units = ChannelUnits(model, analysis)
        self.budget = Budget(analysis, self.units, target, allocation=allocation, cost_power=cost_power,
                             max_group_ratio=max_group_ratio)
        self.criteria = check_criteria(criteria)
        self.score_steps = int(score_steps)
        self.sync = sync
        self.stats = UnitStats(self.units.count, self.units.device)
        self.num_steps = 0
        self.pruned = self._no_units()
        """Units fixed at exactly zero."""

    # ---- the step ------------------------------------------------------------------------------

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """One update: decide (`_prepare`), base update, shrink/project (`_project`), fix zeros."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._prepare()
        before = [p.detach().clone() for p in self.units.params] if self._wants_previous() else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._base_update(group, p)
        self._project(before)
        self._fix_pruned()
        self.num_steps += 1
        return loss

    def _prepare(self) -> None:
        """Hook: decisions before the update (gradients are available)."""

    def _wants_previous(self) -> bool:
        """Hook: whether `_project` needs the parameters from before the update."""
        return False

    def _project(self, before: list[torch.Tensor] | None) -> None:
        """Hook: shrink or project redundant units after the update."""

    def _base_update(self, group: dict[str, Any], p: torch.Tensor) -> None:
        state = self.state[p]
        grad, lr, wd, variant = p.grad, group["lr"], group["weight_decay"], group["variant"]
        assert grad is not None  # the caller skips parameters without gradients
        if variant == "sgd":
            d = grad if wd == 0 else grad.add(p, alpha=wd)
            mu = group["momentum"]
            if mu != 0:
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = d.detach().clone()
                else:
                    buf.mul_(mu).add_(d, alpha=1 - group["dampening"])
                d = d.add(buf, alpha=mu) if group["nesterov"] else buf
            p.add_(d, alpha=-lr)
            return
        if variant == "adamw" and wd != 0:
            p.mul_(1 - lr * wd)
        d = grad if variant == "adamw" or wd == 0 else grad.add(p, alpha=wd)
        if "step" not in state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        state["step"] += 1
        beta1, beta2 = group["betas"]
        state["exp_avg"].mul_(beta1).add_(d, alpha=1 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(d, d, value=1 - beta2)
        bias1 = 1 - beta1 ** state["step"]
        bias2 = 1 - beta2 ** state["step"]
        denom = (state["exp_avg_sq"].sqrt() / math.sqrt(bias2)).add_(group["eps"])
        p.addcdiv_(state["exp_avg"], denom, value=-lr / bias1)

    def _fix_pruned(self) -> None:
        """Pruned units back to exactly 0.0, and their momentum / moment estimates with them."""
        if not bool(self.pruned.any()):
            return
        self.units.zero_(self.pruned)
        for key in ("momentum_buffer", "exp_avg", "exp_avg_sq"):
            bufs = [self.state[p].get(key) if p in self.state else None for p in self.units.params]
            if any(b is not None for b in bufs):
                self.units.fill_(self.pruned, bufs)

    # ---- helpers for subclasses --------------------------------------------------------------

    def _no_units(self) -> torch.Tensor:
        return torch.zeros(self.units.count, dtype=torch.bool, device=self.units.device)

    def _agree(self, mask: torch.Tensor) -> torch.Tensor:
        """The same decision on every rank: rank 0's."""
        if self.sync and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            shared = mask.to(torch.uint8).contiguous()
            dist.broadcast(shared, src=0)
            return shared.bool()
        return mask

    def _saliency(self, among: torch.Tensor) -> np.ndarray:
        """Per-unit saliency (higher = keep) from the current weights and the stats window."""
        return saliency(self.units, self.stats, self.criteria, among).numpy()

    def _select(self, goal: float, fixed: torch.Tensor, eligible: torch.Tensor | None = None,
                priority: np.ndarray | None = None) -> torch.Tensor:
        """`fixed` plus the lowest-priority eligible units that bring the compiled model to `goal`."""
        among = ~fixed if eligible is None else eligible & ~fixed
        pri = self._saliency(among) if priority is None else priority
        chosen = self.budget.select(pri, goal, fixed.cpu().numpy(),
                                    None if eligible is None else eligible.cpu().numpy())
        return self._agree(torch.as_tensor(chosen, device=self.units.device))

    def _lr_of_units_params(self) -> list[float]:
        """The lr of each unit parameter's group (0 for parameters this optimizer does not train)."""
        lrs = {id(p): g["lr"] for g in self.param_groups for p in g["params"]}
        return [float(lrs.get(id(p), 0.0)) for p in self.units.params]

    # ---- results ---------------------------------------------------------------------------------

    def zero_groups(self) -> dict[int, tuple[int, ...]]:
        """Group id -> channels whose every parameter slice is exactly 0.0 now (removable losslessly)."""
        return self.units.masks(self.units.exact_zeros())

    def redundant_groups(self) -> dict[int, tuple[int, ...]]:
        """Group id -> channels the optimizer has chosen to zero so far (done or in progress)."""
        return self.units.masks(self._planned())

    def _planned(self) -> torch.Tensor:
        return self.pruned.clone()

    @property
    def finished(self) -> bool:
        """Whether every planned redundant unit has been driven to zero and fixed there."""
        return False

    def planned_ratio(self) -> float:
        """Share of the target's kind the compiled model keeps once the planned units are gone."""
        return self.budget.kept(self._planned().cpu().numpy())

    def __repr__(self) -> str:
        zero = int(self.units.exact_zeros().sum())
        target = self.budget.target or "none"
        return (f"{type(self).__name__}(target={target}, units={self.units.count}, step={self.num_steps}, "
                f"exactly zero={zero}, variant={self.param_groups[0]['variant']})")

    # ---- state -----------------------------------------------------------------------------------

    def _sparse_state(self) -> dict[str, Any]:
        """Everything besides the base optimizer's per-parameter state (override, call super)."""
        return {"algorithm": self.algorithm, "units": self.units.count, "num_steps": self.num_steps,
                "pruned": self.pruned.cpu().clone(), "stats": self.stats.state()}

    def _load_sparse_state(self, state: Mapping[str, Any]) -> None:
        self.num_steps = int(state["num_steps"])
        self.pruned = torch.as_tensor(state["pruned"]).to(self.units.device).clone()
        self.stats.load(state["stats"])

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        """The torch state plus the sparse bookkeeping under 'group_sparse'."""
        sd = super().state_dict()
        sd["group_sparse"] = self._sparse_state()
        return sd

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:  # type: ignore[override]
        """Restore from `state_dict()`; training then continues bit for bit."""
        sd = dict(state_dict)
        extra = sd.pop("group_sparse", None)
        if extra is None:
            raise InputError(f"this state_dict has no 'group_sparse' entry: it was not saved by a "
                             f"{type(self).__name__}")
        if extra["algorithm"] != self.algorithm or int(extra["units"]) != self.units.count:
            raise InputError(f"state_dict was saved by {extra['algorithm']!r} with {extra['units']} units; "
                             f"this is {self.algorithm!r} with {self.units.count} units (another model or "
                             "optimizer)")
        super().load_state_dict(sd)
        self._load_sparse_state(extra)
