"""Landing on a target: bisect a family of plans, then give channels back until the target is met.

`allocate` bisects the family parameter until the plan keeps at most the target share (by any
cost function: MACs, parameters, predicted latency), then *lands*: it gives channels back, one
allowed step of one group at a time (the highest-scoring channels first), while the target still
holds. Coarse models (few groups, `round_to`) get two more tries: trading a step of one group for a
step of another, and a bounded sweep over pairs of groups. The result keeps at most the target and,
unless the limits make it impossible, at least `target * (1 - tolerance)` of it; otherwise
TargetError names the achievable figures on both sides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from prunec.analysis.groups import Group
from prunec.errors import TargetError
from prunec.selection import CostFn, Family, Masks, Plan, masks_from_plan


@dataclass(frozen=True)
class Allocation:
    """The chosen removal and what it keeps."""

    masks: Masks
    kept: float
    """Fraction of the target quantity kept."""
    parameter: float
    """The family parameter bisection settled on (the uniform ratio, the global fraction)."""


def allocate(groups: Sequence[Group], scores: Mapping[int, np.ndarray], family: Family, cost: CostFn,
             target: float, what: str, tolerance: float = 0.02, max_ratio: float = 0.99) -> Allocation:
    """Bisect `family` to keep at most `target` (by `cost`), then land within `tolerance` of it.

    Raises TargetError, with the closest achievable figure, when even the smallest plan keeps more
    than `target`, or when no plan lands in [target * (1 - tolerance), target].
    """
    def at(x: float) -> tuple[Plan, Masks, float]:
        plan = family.plan(x)
        masks = masks_from_plan(groups, scores, plan)
        return plan, masks, cost(masks)

    plan, masks, kept = at(1.0)
    if kept > target + 1e-9:
        raise TargetError(
            f"{what}={target:g} cannot be reached: removing {max_ratio:.0%} of every prunable group still "
            f"keeps {kept:.1%} of the {what} (the rest is in pinned or unprunable layers, or kept by "
            f"min_keep, round_to or overrides). The closest achievable target is {what}={_up(kept)}.")
    lo, hi = 0.0, 1.0
    best = (plan, masks, kept)
    for _ in range(40):
        mid = (lo + hi) / 2
        cand = at(mid)
        if cand[2] <= target + 1e-12:
            hi, best = mid, cand
        else:
            lo = mid
        if hi - lo < 1e-6:
            break
    plan, masks, kept = _land(groups, scores, family, best, cost, target)
    if kept < target * (1 - tolerance) - 1e-12:
        plan, masks, kept = _trade(groups, scores, family, (plan, masks, kept), cost, target, tolerance)
    if kept < target * (1 - tolerance) - 1e-12:
        plan, masks, kept = _sweep(groups, scores, family, (plan, masks, kept), cost, target)
    if kept < target * (1 - tolerance) - 1e-12:
        above = _smallest_above(groups, scores, family, plan, masks, cost, target)
        raise TargetError(
            f"{what}={target:g} cannot be met within {tolerance:.0%}: with these limits the closest "
            f"achievable figures are {what}={_down(kept)} (below) and {what}={_up(above)} (above). Pass one "
            f"of those, a smaller round_to, or a larger tolerance.")
    return Allocation(masks, kept, hi)


def _up(x: float) -> str:
    """`x` rounded up to 3 decimals: a target at that figure is reachable."""
    return f"{np.ceil(x * 1000 - 1e-9) / 1000:.3f}"


def _down(x: float) -> str:
    """`x` rounded down to 3 decimals."""
    return f"{np.floor(x * 1000 + 1e-9) / 1000:.3f}"


def _next_steps(groups: Sequence[Group], family: Family, plan: Plan) -> list[tuple[Group, int]]:
    """For each group that can grow, its next allowed keep count."""
    out = []
    for g in groups:
        bigger = family.allowed[g.id][family.allowed[g.id] > plan[g.id]]
        if len(bigger):
            out.append((g, int(bigger[0])))
    return out


def _with(masks: Masks, group: Group, scores: Mapping[int, np.ndarray], keep: int) -> Masks:
    out = dict(masks)
    out.update(masks_from_plan([group], scores, {group.id: keep}))
    return out


def _land(groups: Sequence[Group], scores: Mapping[int, np.ndarray], family: Family,
          start: tuple[Plan, Masks, float], cost: CostFn, target: float) -> tuple[Plan, Masks, float]:
    """Give back one allowed step of one group at a time, best channels first, while cost <= target."""
    plan, masks, kept = dict(start[0]), start[1], start[2]
    while True:
        options = []
        for g, new_keep in _next_steps(groups, family, plan):
            ranked = np.sort(scores[g.id])[::-1]
            options.append((float(np.mean(ranked[plan[g.id]:new_keep])), g, new_keep))
        options.sort(key=lambda o: -o[0])
        for _gain, g, new_keep in options:
            trial = _with(masks, g, scores, new_keep)
            c = cost(trial)
            if c <= target + 1e-12:
                plan[g.id], masks, kept = new_keep, trial, c
                break
        else:
            return plan, masks, kept


def _prev_step(family: Family, group: Group, keep: int) -> int | None:
    smaller = family.allowed[group.id][family.allowed[group.id] < keep]
    return int(smaller[-1]) if len(smaller) else None


def _trade(groups: Sequence[Group], scores: Mapping[int, np.ndarray], family: Family,
           start: tuple[Plan, Masks, float], cost: CostFn, target: float, tolerance: float,
           rounds: int = 20) -> tuple[Plan, Masks, float]:
    """When single steps cannot land (coarse groups), trade a step of one group for a step of
    another and land again, keeping any trade that ends closer to the target.
    """
    plan, masks, kept = dict(start[0]), start[1], start[2]
    for _ in range(rounds):
        best = None
        for g_up, up in _next_steps(groups, family, plan):
            for g_down in groups:
                down = _prev_step(family, g_down, plan[g_down.id])
                if g_down.id == g_up.id or down is None:
                    continue
                trial = _with(_with(masks, g_up, scores, up), g_down, scores, down)
                c = cost(trial)
                if kept < c <= target + 1e-12 and (best is None or c > best[2]):
                    trial_plan = dict(plan)
                    trial_plan[g_up.id], trial_plan[g_down.id] = up, down
                    best = (trial_plan, trial, c)
        if best is None:
            break
        plan, masks, kept = _land(groups, scores, family, best, cost, target)
        if kept >= target * (1 - tolerance):
            break
    return plan, masks, kept


def _sweep(groups: Sequence[Group], scores: Mapping[int, np.ndarray], family: Family,
           start: tuple[Plan, Masks, float], cost: CostFn, target: float,
           budget: int = 3000) -> tuple[Plan, Masks, float]:
    """Last resort for models with few, coarse groups: for each pair of groups, try every allowed
    count of the first with the largest count of the second that fits (bisection), then land.
    """
    plan, masks, kept = dict(start[0]), start[1], start[2]
    best = (plan, masks, kept)
    evals = 0
    for a in groups:
        for b in groups:
            if a.id == b.id or len(family.allowed[b.id]) < 2:
                continue
            base = best[1]
            for va in family.allowed[a.id]:
                with_a = _with(base, a, scores, int(va))
                options = family.allowed[b.id]
                lo, hi, fit = 0, len(options) - 1, None
                while lo <= hi and evals < budget:
                    mid = (lo + hi) // 2
                    trial = _with(with_a, b, scores, int(options[mid]))
                    c = cost(trial)
                    evals += 1
                    if c <= target + 1e-12:
                        fit, lo = (trial, c, int(options[mid])), mid + 1
                    else:
                        hi = mid - 1
                if fit is not None and fit[1] > best[2]:
                    new_plan = dict(best[0])
                    new_plan[a.id], new_plan[b.id] = int(va), fit[2]
                    best = (new_plan, fit[0], fit[1])
                if evals >= budget:
                    return _land(groups, scores, family, best, cost, target)
    return _land(groups, scores, family, best, cost, target)


def _smallest_above(groups: Sequence[Group], scores: Mapping[int, np.ndarray], family: Family, plan: Plan,
                    masks: Masks, cost: CostFn, target: float) -> float:
    """The least the target quantity grows to when any one group takes its next step."""
    above = [cost(_with(masks, g, scores, k)) for g, k in _next_steps(groups, family, plan)]
    return min((c for c in above if c > target), default=1.0)
