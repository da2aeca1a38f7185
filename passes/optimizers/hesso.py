"""HESSO: Hybrid Efficient Structured Sparse Optimizer (Chen et al., 2024), over prunec's groups.

Schedule (steps counted by `step()` calls):

1. Warm-up (`warmup_steps`): the base optimizer (SGD/Adam/AdamW) trains every parameter.
2. `periods` periods of `pruning_steps // periods` steps. At the start of period p the units
   with the lowest saliency (per unit of MACs/parameters saved) are added to the redundant set
   until the compiled model would keep `1 - (1 - goal) * (p + 1) / periods` of the target's kind.
   During the period those units keep receiving their gradient update (their knowledge flows
   into the rest of the network) and are then multiplied by (T - j - 1) / (T - j) at step j of
   the period: their starting value decays linearly and is exactly 0.0 after the period's last
   step, where they are fixed.
3. The rest of training updates the important units only; the redundant ones stay exactly 0.0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from prunec.passes.optimizers.base import GroupSparseOptimizer, Schedule
from torch import nn

from prunec.analysis.result import Analysis
from prunec.errors import InputError
from prunec.targets import Target


class HESSO(GroupSparseOptimizer):
    """Warm up, then select redundant units progressively by saliency and shrink them to exactly zero.

    Args:
        model, analysis, target: see `GroupSparseOptimizer` (target is required).
        steps: total optimizer steps you will run (sets the default schedule).
        warmup_steps: steps before the first selection (default 10% of `steps`).
        pruning_steps: steps over which all redundant units reach zero (default 40% of `steps`).
        periods: number of progressive selections (default 4).
        **base: lr, variant, momentum, weight_decay, ... (see `GroupSparseOptimizer`).

    Example:
        >>> opt = HESSO(model, prunec.analyze(model, x), "macs=0.5", steps=1000, lr=0.1, momentum=0.9)
        >>> # usual loop: loss.backward(); opt.step(); opt.zero_grad()
        >>> opt.zero_groups()   # {group id: channels that are exactly zero}

    """

    algorithm: ClassVar[str] = "hesso"

    def __init__(self, model: nn.Module, analysis: Analysis, target: str | Target = "macs=0.5", *,
                 steps: int | None = None, warmup_steps: int | None = None, pruning_steps: int | None = None,
                 periods: int = 4, **base: Any) -> None:
        if target is None:
            raise InputError(f"{type(self).__name__} needs a target such as 'macs=0.5'")
        super().__init__(model, analysis, target, **base)
        self.schedule = Schedule.make(steps, warmup_steps, pruning_steps, periods)
        self.goals = self.budget.schedule(periods)
        self.active = self._no_units()
        """Units being shrunk in the current period."""
        self.eligible: torch.Tensor | None = None
        """Units that may be chosen (None: all); CRIC narrows this to the units it verified."""
        self.priority: np.ndarray | None = None
        """A fixed ranking to use instead of the live saliency (None: saliency at each selection)."""

    # ---- decisions -------------------------------------------------------------------------------

    def _selection_step(self, period: int) -> int:
        return self.schedule.warmup + period * self.schedule.period

    def _in_window(self, t: int) -> bool:
        """Whether step t's gradients feed the next selection's statistics."""
        s = self.schedule
        nxt = next((self._selection_step(p) for p in range(s.periods) if self._selection_step(p) >= t), None)
        return nxt is not None and nxt - t < max(1, self.score_steps)

    def _prepare(self) -> None:
        t = self.num_steps
        if self._in_window(t):
            self.stats.add(self.units)
        period = self.schedule.period_at(t)
        if period is None or t != self._selection_step(period):
            return
        chosen = self._select(self.goals[period], self.pruned, self.eligible, self.priority)
        self.active = chosen & ~self.pruned
        self.stats.reset()

    def _project(self, before: list[torch.Tensor] | None) -> None:
        if not bool(self.active.any()):
            return
        s = self.schedule
        j = (self.num_steps - s.warmup) % s.period
        factor = torch.ones(self.units.count, device=self.units.device)
        factor[self.active] = (s.period - j - 1) / (s.period - j)
        self.units.scale_(factor)
        if j == s.period - 1:
            self.units.zero_(self.active)
            self.pruned |= self.active
            self.active = self._no_units()

    # ---- results and state ---------------------------------------------------------------------

    def _planned(self) -> torch.Tensor:
        return self.pruned | self.active

    @property
    def finished(self) -> bool:
        """True once the last period has ended (every redundant unit is fixed at exactly zero)."""
        return self.num_steps >= self.schedule.end

    def _sparse_state(self) -> dict[str, Any]:
        return {**super()._sparse_state(), "active": self.active.cpu().clone()}

    def _load_sparse_state(self, state: Mapping[str, Any]) -> None:
        super()._load_sparse_state(state)
        self.active = torch.as_tensor(state["active"]).to(self.units.device).clone()
