"""DHSPG: Dual Half-Space Projected Gradient (OTOv2, Chen et al., 2023), over prunec's groups.

1. Warm-up (`warmup_steps`): the base optimizer trains everything.
2. Partition: the units with the lowest saliency (per unit of MACs/parameters saved) that bring
   the compiled model to the target form the redundant set R; the rest are important.
3. Sparsification window (`pruning_steps`): important units take the plain base step. Each
   non-zero redundant unit u takes the trial step

       x_hat_u = x_u - lr * (d_u + lambda_u * x_u / ||x_u||)

   where d is the base optimizer's direction. When d points away from the origin
   (<x_u, d_u> < 0), lambda_u is raised into the interval where the combined direction still
   decreases the loss to first order (below -||d||^2 ||x|| / <x, d>) yet shrinks the unit (above
   -<x, d> / ||x||). Then the half-space projection: if <x_hat_u, x_u> < epsilon ||x_u||^2,
   the unit is set to exactly 0.0 and fixed. At the window's last step any redundant unit still
   non-zero is projected too, so the target is met exactly.
4. The rest of training keeps R at exactly zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from prunec.passes.optimizers.base import GroupSparseOptimizer, Schedule
from torch import nn

from prunec.analysis.result import Analysis
from prunec.errors import InputError
from prunec.targets import Target


class DHSPG(GroupSparseOptimizer):
    """Partition units once by saliency, then push the redundant ones to zero with an adaptive
    group-lasso step and the half-space projection.

    Args:
        model, analysis, target: see `GroupSparseOptimizer` (target is required).
        steps: total optimizer steps you will run (sets the default schedule).
        warmup_steps: steps before the partition (default 10% of `steps`).
        pruning_steps: length of the sparsification window (default 40% of `steps`).
        lmbda: base penalty; None sets, per unit, 4 ||x_u|| / (lr * pruning_steps) at the
            partition (the penalty alone would zero the unit in a quarter of the window).
        lmbda_amplify: factor on the lower bound when lambda must be raised.
        lmbda_max: lambda never exceeds lmbda_max * base penalty (unless needed to stay a descent
            direction: then the midpoint of the admissible interval is used).
        epsilon: half-space threshold in [0, 1).
        **base: lr, variant, momentum, weight_decay, ... (see `GroupSparseOptimizer`).

    """

    algorithm: ClassVar[str] = "dhspg"

    def __init__(self, model: nn.Module, analysis: Analysis, target: str | Target = "macs=0.5", *,
                 steps: int | None = None, warmup_steps: int | None = None, pruning_steps: int | None = None,
                 lmbda: float | None = None, lmbda_amplify: float = 1.1, lmbda_max: float = 10.0,
                 epsilon: float = 0.5, **base: Any) -> None:
        if target is None:
            raise InputError("DHSPG needs a target such as 'macs=0.5'")
        if not 0.0 <= epsilon < 1.0:
            raise InputError(f"epsilon must be in [0, 1), got {epsilon}")
        super().__init__(model, analysis, target, **base)
        self.schedule = Schedule.make(steps, warmup_steps, pruning_steps, 1)
        self.lmbda, self.lmbda_amplify, self.lmbda_max = lmbda, lmbda_amplify, lmbda_max
        self.epsilon = epsilon
        self.redundant = self._no_units()
        self.base_lambda = torch.zeros(self.units.count, device=self.units.device)

    def _prepare(self) -> None:
        t, s = self.num_steps, self.schedule
        if s.warmup - self.score_steps <= t <= s.warmup:
            self.stats.add(self.units)
        if t != s.warmup:
            return
        self.redundant = self._select(self.budget.goal, self.pruned)
        if self.lmbda is None:
            lr = max(g["lr"] for g in self.param_groups) or 1.0
            self.base_lambda = 4.0 * self.units.norms() / (lr * s.period)
        else:
            self.base_lambda = torch.full((self.units.count,), float(self.lmbda), device=self.units.device)
        self.stats.reset()

    def _live(self) -> torch.Tensor:
        return self.redundant & ~self.pruned

    def _wants_previous(self) -> bool:
        s = self.schedule
        return s.warmup <= self.num_steps < s.end and bool(self._live().any())

    def _adaptive_lambda(self, x: list[torch.Tensor], d: list[torch.Tensor | None]) -> torch.Tensor:
        """Lambda per unit: raised where the base direction grows the unit (see module docstring)."""
        u = self.units
        ip = u.reduce([xi * di if di is not None else None for xi, di in zip(x, d, strict=True)]).double()
        dd = u.reduce([di * di if di is not None else None for di in d]).double()
        xn = u.reduce([xi * xi for xi in x]).double().sqrt()
        base = self.base_lambda.double()
        lam = base.clone()
        grow = (ip < 0) & (xn > 0)
        lower = -ip / xn.clamp_min(1e-30)
        upper = -dd * xn / ip.clamp_max(-1e-30)
        raised = torch.minimum(torch.maximum(self.lmbda_amplify * lower, base), base * self.lmbda_max)
        raised = torch.where(raised >= upper, (lower + upper) / 2, raised)
        lam[grow] = raised[grow]
        return lam

    def _project(self, before: list[torch.Tensor] | None) -> None:
        if before is None:
            return
        u, live, s = self.units, self._live(), self.schedule
        lrs = self._lr_of_units_params()
        d = [(xb - p.detach()) / lr if lr > 0 else None
             for xb, p, lr in zip(before, u.params, lrs, strict=True)]
        lam = self._adaptive_lambda(before, d)
        xn = u.reduce([xb * xb for xb in before]).sqrt()
        coef = torch.where(live & (xn > 0), lam.float() / xn.clamp_min(1e-30), torch.zeros_like(xn))
        with torch.no_grad():
            for k, (p, xb, lr) in enumerate(zip(u.params, before, lrs, strict=True)):
                step = u.expand(coef, k)
                if step is not None and lr > 0:
                    p.sub_(lr * step.to(p.dtype) * xb)
        inner = u.reduce([p.detach() * xb for p, xb in zip(u.params, before, strict=True)])
        crossed = live & (inner < self.epsilon * xn * xn)
        if self.num_steps == s.end - 1:
            crossed = live
        crossed = self._agree(crossed)
        if bool(crossed.any()):
            u.zero_(crossed)
            self.pruned |= crossed

    def _planned(self) -> torch.Tensor:
        return self.pruned | self.redundant

    @property
    def finished(self) -> bool:
        """True once the sparsification window has ended (every redundant unit is exactly zero)."""
        return self.num_steps >= self.schedule.end

    def _sparse_state(self) -> dict[str, Any]:
        return {**super()._sparse_state(), "redundant": self.redundant.cpu().clone(),
                "base_lambda": self.base_lambda.cpu().clone()}

    def _load_sparse_state(self, state: Mapping[str, Any]) -> None:
        super()._load_sparse_state(state)
        self.redundant = torch.as_tensor(state["redundant"]).to(self.units.device).clone()
        self.base_lambda = torch.as_tensor(state["base_lambda"]).to(self.units.device).clone()
