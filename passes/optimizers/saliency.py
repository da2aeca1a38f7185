"""Saliency of channel units: how much each unit matters, from its weights and recent gradients.

Criteria (higher = more important), each normalized by its L2 norm over the units before they are
weighted and summed, so that no criterion dominates by scale:

- `magnitude`: ||x_u||, the unit's weight norm.
- `avg_magnitude`: ||x_u|| / sqrt(n_u), the norm per element (fair to small units).
- `cosine`: 1 - cos(g_u, x_u). A gradient step along -g shrinks x when cos > 0: the loss itself
  pushes the unit towards zero, a sign of redundancy.
- `taylor`: |<g_u, x_u>|, the first-order loss change of zeroing the unit.
- `taylor2`: sum (g x)^2 / 2 over the unit, the diagonal-Fisher second-order estimate.

Gradient terms are averaged over a window of recent steps (`UnitStats`), not read from one noisy
batch.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from prunec.passes.optimizers.units import ChannelUnits

from prunec.errors import InputError

CRITERIA = ("magnitude", "avg_magnitude", "cosine", "taylor", "taylor2")
DEFAULT_CRITERIA: Mapping[str, float] = dict.fromkeys(CRITERIA, 0.2)


def check_criteria(criteria: Mapping[str, float] | None) -> dict[str, float]:
    """Validated criterion weights (the default mix when None)."""
    if criteria is None:
        return dict(DEFAULT_CRITERIA)
    unknown = sorted(set(criteria) - set(CRITERIA))
    if unknown:
        raise InputError(f"unknown saliency criteria {unknown}; choose from {list(CRITERIA)}")
    if not any(float(w) > 0 for w in criteria.values()):
        raise InputError(f"saliency criteria need a positive weight, got {dict(criteria)}")
    return {k: float(v) for k, v in criteria.items()}


class UnitStats:
    """Running sums of per-unit gradient statistics over the steps of a window."""

    KEYS = ("xg", "gg", "xg2")

    def __init__(self, count: int, device: torch.device) -> None:
        self.count = count
        self.device = device
        self.steps = 0
        self.sums = {k: torch.zeros(count, device=device) for k in self.KEYS}

    def add(self, units: ChannelUnits) -> None:
        """Add one step's statistics from the parameters' current values and gradients."""
        xs = [p.detach() for p in units.params]
        gs = [p.grad.detach() if p.grad is not None else None for p in units.params]
        xg = [x * g if g is not None else None for x, g in zip(xs, gs, strict=True)]
        self.sums["xg"] += units.reduce(xg)
        self.sums["gg"] += units.reduce([g * g if g is not None else None for g in gs])
        self.sums["xg2"] += units.reduce([v * v if v is not None else None for v in xg])
        self.steps += 1

    def mean(self, key: str) -> torch.Tensor:
        """Average over the recorded steps (zeros when none were recorded)."""
        return self.sums[key] / max(1, self.steps)

    def reset(self) -> None:
        """Start a new window."""
        self.steps = 0
        for v in self.sums.values():
            v.zero_()

    def state(self) -> dict[str, object]:
        """A copy for the optimizer's state_dict."""
        return {"steps": self.steps, **{k: v.clone() for k, v in self.sums.items()}}

    def load(self, state: Mapping[str, object]) -> None:
        """Restore from `state()`."""
        self.steps = int(state["steps"])  # type: ignore[call-overload]
        for k in self.KEYS:
            self.sums[k] = torch.as_tensor(state[k]).to(self.device).clone()


def _normalized(v: torch.Tensor, among: torch.Tensor) -> torch.Tensor:
    denom = float(v[among].norm()) if bool(among.any()) else 0.0
    return v / denom if denom > 0 else torch.zeros_like(v)


def saliency(units: ChannelUnits, stats: UnitStats, criteria: Mapping[str, float],
             among: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted, normalized sum of the criteria per unit (float64 on the CPU).

    Args:
        units: the channel units (their parameters are read now).
        stats: gradient statistics of the window.
        criteria: weight of each criterion.
        among: bool per unit: the units compared (the normalizers are computed over them).

    """
    xx = units.reduce([p.detach() * p.detach() for p in units.params])
    if among is None:
        among = torch.ones(units.count, dtype=torch.bool, device=xx.device)
    among = among.to(xx.device)
    norm = xx.sqrt()
    values: dict[str, torch.Tensor] = {}
    for name in criteria:
        if name == "magnitude":
            values[name] = norm
        elif name == "avg_magnitude":
            values[name] = norm / units.size.clamp_min(1).sqrt()
        elif name == "cosine":
            gnorm = stats.mean("gg").clamp_min(0).sqrt()
            cos = stats.mean("xg") / (norm * gnorm).clamp_min(1e-30)
            values[name] = 1.0 - cos.clamp(-1, 1)
        elif name == "taylor":
            values[name] = stats.mean("xg").abs()
        elif name == "taylor2":
            values[name] = 0.5 * stats.mean("xg2")
    total = torch.zeros(units.count, dtype=torch.float64, device=xx.device)
    for name, weight in criteria.items():
        total += weight * _normalized(values[name].double(), among)
    return total.cpu()

