"""HSPG: Half-Space Stochastic Projected Gradient (OTOv1, Chen et al., 2021), over prunec's groups.

HSPG minimizes f(x) + lmbda * sum_u ||x_u|| (a group lasso over channel units). Every step is the
base optimizer's step plus the penalty's (sub)gradient on each non-zero unit:

    x_hat_u = x_u - lr * (d_u + lmbda * x_u / ||x_u||)

From `half_space_start` on, a unit whose trial point leaves the half-space
<x_hat_u, x_u> >= epsilon * ||x_u||^2 is projected to exactly 0.0 and fixed there. Which units end
at zero is decided by the penalty (no partition); a target, if given, caps how far the projection
may go: once the compiled model would meet it, no further unit is projected (those closest to the
origin go first). A unit whose projection would empty a layer is never projected.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from prunec.passes.optimizers.base import GroupSparseOptimizer
from torch import nn

from prunec.analysis.result import Analysis
from prunec.errors import InputError
from prunec.targets import Target


class HSPG(GroupSparseOptimizer):
    """Group-lasso training with the half-space projection; the target (optional) is a cap.

    Args:
        model, analysis: see `GroupSparseOptimizer`.
        target: None (no cap) or 'macs=0.5' / 'params=0.5' / 'ratio=0.4': projection stops once
            the compiled model would meet it.
        lmbda: group-lasso weight.
        epsilon: half-space threshold in [0, 1).
        half_space_start: step from which projections happen (before it: subgradient steps only).
        **base: lr, variant, momentum, weight_decay, ... (see `GroupSparseOptimizer`).

    """

    algorithm: ClassVar[str] = "hspg"

    def __init__(self, model: nn.Module, analysis: Analysis, target: str | Target | None = None, *,
                 lmbda: float = 1e-3, epsilon: float = 0.0, half_space_start: int = 0, **base: Any) -> None:
        if not 0.0 <= epsilon < 1.0:
            raise InputError(f"epsilon must be in [0, 1), got {epsilon}")
        if lmbda < 0:
            raise InputError(f"lmbda must be >= 0, got {lmbda}")
        super().__init__(model, analysis, target, **base)
        self.lmbda, self.epsilon, self.half_space_start = float(lmbda), float(epsilon), int(half_space_start)
        self.capped = False
        """Whether the target cap has been reached (no more projections)."""

    def _wants_previous(self) -> bool:
        return True

    def _project(self, before: list[torch.Tensor] | None) -> None:
        assert before is not None  # _wants_previous is always True
        u = self.units
        xn = u.reduce([xb * xb for xb in before]).sqrt()
        live = ~self.pruned & (xn > 0)
        coef = torch.where(live, self.lmbda / xn.clamp_min(1e-30), torch.zeros_like(xn))
        with torch.no_grad():
            for k, (p, xb, lr) in enumerate(zip(u.params, before, self._lr_of_units_params(), strict=True)):
                step = u.expand(coef, k)
                if step is not None and lr > 0:
                    p.sub_(lr * step.to(p.dtype) * xb)
        if self.num_steps < self.half_space_start or self.capped:
            return
        inner = u.reduce([p.detach() * xb for p, xb in zip(u.params, before, strict=True)])
        ratio = inner / (xn * xn).clamp_min(1e-30)
        crossed = live & (ratio < self.epsilon)
        if bool(crossed.any()):
            # never empty a layer, and stop at the target (if any): closest to the origin first
            chosen = self.budget.select(ratio.double().cpu().numpy(), self.budget.goal,
                                        self.pruned.cpu().numpy(), crossed.cpu().numpy())
            crossed = torch.as_tensor(chosen, device=u.device) & ~self.pruned
            capped = self.budget.kept(np.asarray(chosen)) <= self.budget.goal + 1e-12
            self.capped = self.budget.target is not None and capped
        crossed = self._agree(crossed)
        if bool(crossed.any()):
            u.zero_(crossed)
            self.pruned |= crossed

    @property
    def finished(self) -> bool:
        """HSPG has no schedule: True once the target cap is reached (False without a target)."""
        return self.capped

    def _sparse_state(self) -> dict[str, Any]:
        return {**super()._sparse_state(), "capped": self.capped}

    def _load_sparse_state(self, state: Mapping[str, Any]) -> None:
        super()._load_sparse_state(state)
        self.capped = bool(state["capped"])
