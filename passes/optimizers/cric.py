"""CRIC: HESSO with the Corrective Redundant Identification Cycle (Chen et al., 2024).

A saliency score is an estimate; zeroing a unit that only looks redundant can collapse a
network beyond recovery. CRIC tests the candidates before committing to them:

1. Warm-up as in HESSO; then rank units by saliency once.
2. Cycle c: snapshot the weights, buffers and optimizer state; the candidates are the lowest-ranked units
   (not yet vetoed) that meet the target. Train for `cycle_steps` while shrinking every candidate
   linearly to zero, and measure each candidate's removal cost along that path,

       cost_u = - mean_j <g_j, x0_u>      (x0_u: the unit at the snapshot, g_j: the gradient at step j)

   which integrates the gradient over the shrink from x0_u to 0: the loss increase that zeroing
   u caused, with the rest of the network adapting meanwhile. A candidate whose cost exceeds
   `veto` times the candidates' mean |cost| is indispensable: it is vetoed for good. Then the
   snapshot is restored (the cycle only measured).
3. Cycles stop when a cycle vetoes at most `tolerance` units, or after `max_cycles`.
4. HESSO's progressive phase then drives the final candidates (the target's worth of units, never
   a vetoed one) to exactly zero over `pruning_steps`.

The cycles cost extra steps: `steps` must cover warm-up + max_cycles * cycle_steps + pruning_steps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from prunec.passes.optimizers.base import Schedule
from prunec.passes.optimizers.hesso import HESSO
from torch import nn

from prunec.analysis.result import Analysis
from prunec.errors import InputError
from prunec.targets import Target

STATE_KEYS = ("momentum_buffer", "exp_avg", "exp_avg_sq", "step")


class CRIC(HESSO):
    """HESSO whose redundant set is verified by shrink-and-restore cycles (see module docstring).

    Args:
        model, analysis, target, steps, warmup_steps, pruning_steps, periods: as for HESSO.
        cycle_steps: steps of one identification cycle (default: pruning_steps // periods).
        max_cycles: most cycles run (default 4).
        veto: a candidate costing more than veto * mean |candidate cost| is indispensable.
        tolerance: stop cycling when a cycle vetoes at most this many units.
        **base: lr, variant, momentum, weight_decay, ... (see `GroupSparseOptimizer`).

    """

    algorithm: ClassVar[str] = "cric"

    def __init__(self, model: nn.Module, analysis: Analysis, target: str | Target = "macs=0.5", *,
                 steps: int | None = None, warmup_steps: int | None = None, pruning_steps: int | None = None,
                 periods: int = 4, cycle_steps: int | None = None, max_cycles: int = 4, veto: float = 3.0,
                 tolerance: int = 0, **base: Any) -> None:
        warmup = warmup_steps if warmup_steps is not None or steps is None else round(0.1 * steps)
        span = pruning_steps if pruning_steps is not None or steps is None else round(0.4 * steps)
        probe = Schedule.make(None, warmup, span, periods)
        self.cycle_steps = int(cycle_steps) if cycle_steps is not None else probe.period
        if self.cycle_steps < 1 or max_cycles < 1:
            raise InputError(f"cycle_steps ({self.cycle_steps}) and max_cycles ({max_cycles}) must be >= 1")
        need = probe.end + max_cycles * self.cycle_steps
        if steps is not None and need > steps:
            raise InputError(f"CRIC needs warmup_steps + max_cycles * cycle_steps + pruning_steps = {need} "
                             f"steps but steps={steps}; lower max_cycles or cycle_steps, or train longer")
        super().__init__(model, analysis, target, steps=None, warmup_steps=probe.warmup,
                         pruning_steps=probe.period * probe.periods, periods=periods, **base)
        self.max_cycles, self.veto, self.tolerance = int(max_cycles), float(veto), int(tolerance)
        self.buffers = list(model.buffers())
        """Restored with the weights after each cycle (BN running statistics saw the shrunk units)."""
        self.phase = "warmup"
        self.cycle = 0
        self.cycle_start = 0
        self.candidates = self._no_units()
        self.vetoed = self._no_units()
        self.cost = torch.zeros(self.units.count, dtype=torch.float64, device=self.units.device)
        self.snapshot: list[torch.Tensor] = []
        self.saved_state: list[dict[str, Any]] = []
        self.history: list[tuple[int, int]] = []
        """(candidates, vetoed) per finished cycle."""

    # ---- snapshot ----------------------------------------------------------------------------

    def _tracked(self) -> list[torch.Tensor]:
        """Trained parameters, unit parameters (frozen ones are shrunk too) and buffers, each once."""
        seen: dict[int, torch.Tensor] = {}
        for p in [*(q for g in self.param_groups for q in g["params"]), *self.units.params, *self.buffers]:
            seen.setdefault(id(p), p)
        return list(seen.values())

    def _take_snapshot(self) -> None:
        tracked = self._tracked()
        self.snapshot = [p.detach().clone() for p in tracked]
        self.saved_state = [{k: (v.clone() if isinstance(v, torch.Tensor) else v)
                             for k, v in self.state[p].items() if k in STATE_KEYS}
                            if p in self.state else {} for p in tracked]

    def _restore_snapshot(self) -> None:
        tracked = self._tracked()
        with torch.no_grad():
            for p, saved in zip(tracked, self.snapshot, strict=True):
                p.copy_(saved)
        for p, saved in zip(tracked, self.saved_state, strict=True):
            if saved:
                self.state[p] = {k: (v.clone() if isinstance(v, torch.Tensor) else v)
                                 for k, v in saved.items()}
            elif p in self.state:
                del self.state[p]

    def _unit_snapshot(self) -> list[torch.Tensor]:
        where = {id(p): i for i, p in enumerate(self._tracked())}
        return [self.snapshot[where[id(p)]] for p in self.units.params]

    # ---- cycles --------------------------------------------------------------------------------

    def _start_cycle(self) -> None:
        if self.priority is None:
            self.priority = self._saliency(torch.ones_like(self.pruned))
            self.stats.reset()
        self.candidates = self._select(self.budget.goal, self.pruned, ~self.vetoed, self.priority)
        self.cost.zero_()
        self.cycle_start = self.num_steps
        self._take_snapshot()

    def _end_cycle(self) -> None:
        cand = self.candidates
        cost = self.cost / self.cycle_steps
        scale = float(cost[cand].abs().mean()) if bool(cand.any()) else 0.0
        vetoed = cand & (cost > self.veto * scale) if scale > 0 else self._no_units()
        vetoed = self._agree(vetoed)
        self.vetoed |= vetoed
        self.history.append((int(cand.sum()), int(vetoed.sum())))
        self._restore_snapshot()
        self.cycle += 1
        if int(vetoed.sum()) <= self.tolerance or self.cycle >= self.max_cycles:
            self.eligible = self._select(self.budget.goal, self.pruned, ~self.vetoed, self.priority)
            self.schedule = dataclasses.replace(self.schedule, warmup=self.num_steps + 1)
            self.phase = "hesso"
            self.candidates = self._no_units()

    def _prepare(self) -> None:
        t = self.num_steps
        if self.phase == "hesso":
            super()._prepare()
            return
        if self.phase == "warmup":
            if self.schedule.warmup - self.score_steps <= t <= self.schedule.warmup:
                self.stats.add(self.units)
            if t < self.schedule.warmup:
                return
            self.phase = "cycle"
            self._start_cycle()
        elif t == self.cycle_start + self.cycle_steps:
            self._start_cycle()
        grads = [p.grad.detach() if p.grad is not None else None for p in self.units.params]
        x0s = self._unit_snapshot()
        products = [g * x0 if g is not None else None for g, x0 in zip(grads, x0s, strict=True)]
        along = self.units.reduce(products)
        self.cost -= along.double()

    def _project(self, before: list[torch.Tensor] | None) -> None:
        if self.phase == "hesso":
            super()._project(before)
            return
        if self.phase != "cycle":
            return
        j = self.num_steps - self.cycle_start
        factor = torch.ones(self.units.count, device=self.units.device)
        factor[self.candidates] = (self.cycle_steps - j - 1) / (self.cycle_steps - j)
        self.units.scale_(factor)
        if j == self.cycle_steps - 1:
            self._end_cycle()

    # ---- results and state ---------------------------------------------------------------------

    def _planned(self) -> torch.Tensor:
        if self.phase == "hesso" and self.eligible is not None:
            return self.pruned | self.active | self.eligible
        return self.pruned | self.active

    @property
    def finished(self) -> bool:
        """True once the cycles are over and the progressive phase has ended."""
        return self.phase == "hesso" and self.num_steps >= self.schedule.end

    def _sparse_state(self) -> dict[str, Any]:
        def cpu(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.detach().cpu().clone()
        return {**super()._sparse_state(), "phase": self.phase, "cycle": self.cycle,
                "cycle_start": self.cycle_start, "candidates": cpu(self.candidates),
                "vetoed": cpu(self.vetoed),
                "cost": cpu(self.cost), "eligible": cpu(self.eligible),
                "priority": None if self.priority is None else torch.from_numpy(self.priority.copy()),
                "warmup": self.schedule.warmup, "history": list(self.history),
                "snapshot": [cpu(t) for t in self.snapshot],
                "saved_state": [{k: (cpu(v) if isinstance(v, torch.Tensor) else v) for k, v in s.items()}
                                for s in self.saved_state]}

    def _load_sparse_state(self, state: Mapping[str, Any]) -> None:
        super()._load_sparse_state(state)
        dev = self.units.device
        self.phase = state["phase"]
        self.cycle, self.cycle_start = int(state["cycle"]), int(state["cycle_start"])
        self.candidates = state["candidates"].to(dev).clone()
        self.vetoed = state["vetoed"].to(dev).clone()
        self.cost = state["cost"].to(dev).clone()
        self.eligible = None if state["eligible"] is None else state["eligible"].to(dev).clone()
        self.priority = None if state["priority"] is None else state["priority"].numpy().copy()
        self.schedule = dataclasses.replace(self.schedule, warmup=int(state["warmup"]))
        self.history = list(state["history"])
        tracked = self._tracked()
        self.snapshot = [t.to(p.device).clone() for t, p in zip(state["snapshot"], tracked, strict=True)]
        self.saved_state = [{k: (v.to(p.device).clone() if isinstance(v, torch.Tensor) else v)
                             for k, v in s.items()}
                            for s, p in zip(state["saved_state"], tracked, strict=True)]
