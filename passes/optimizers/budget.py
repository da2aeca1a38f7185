"""Budget: turn a user's target (a MACs or parameter share of the compiled model, or a fraction of
channels) into the set of units to drive to zero.

Two allocations, both searched against the compiled model's real cost:

- 'uniform' (default): every group loses (to within one channel) the same fraction of its
  channels, its lowest-saliency ones; the fraction grows one channel at a time until the compiled
  model just meets the target.
- 'global': units are ranked across groups by (saliency / its group's mean saliency) /
  cost**cost_power, where cost is the MACs or parameters saved by removing that unit alone, and
  the shortest prefix of the ranking that meets the target is chosen; no group loses more than
  `max_group_ratio` of its channels.

The compiled model's cost is computed on the IR exactly as the rewrite will shrink it
(`Analysis.new_shapes` + `graph_macs`), so interactions between groups (a conv losing rows to one
group and columns to another) are counted, not estimated.

Every member of every group keeps at least one entry: a layer is never emptied.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from prunec.passes.optimizers.units import ChannelUnits

from prunec.analysis.cost import graph_macs, graph_params
from prunec.analysis.result import Analysis
from prunec.errors import TargetError
from prunec.targets import Target

KINDS = ("macs", "params", "ratio")
ALLOCATIONS = ("uniform", "global")


def parse_target(target: str | Target) -> Target:
    """A Target of a kind the optimizers support ('macs=0.5', 'params=0.3', 'ratio=0.4')."""
    t = Target.parse(target)
    if t.kind not in KINDS:
        raise TargetError(f"structured-sparse optimizers take a macs, params or ratio target, not "
                          f"{t.kind!r}: use 'macs=0.5' (keep half the MACs), 'params=0.5' or 'ratio=0.4' "
                          "(zero 40% of all prunable channels)")
    return t


class Budget:
    """Which units to zero to meet a target, and what a set of zeroed units costs.

    Args:
        analysis: the model's analysis.
        units: the optimizer's channel units.
        target: 'macs=0.5' keeps at most half the MACs; 'params=0.5' half the parameters;
            'ratio=0.4' zeroes 40% of all prunable channels (the group-sparsity target of OTO);
            None: no target (selection is limited only by never emptying a layer).
        allocation: 'uniform' or 'global' (see the module docstring).
        cost_power: exponent of the unit cost in the global ranking (0 ranks by saliency alone).
        max_group_ratio: most of a group's channels the global allocation may remove.

    Raises:
        TargetError: the target cannot be reached even by zeroing every removable unit.

    """

    def __init__(self, analysis: Analysis, units: ChannelUnits, target: str | Target | None, *,
                 allocation: str = "uniform", cost_power: float = 1.0, max_group_ratio: float = 0.9) -> None:
        if allocation not in ALLOCATIONS:
            raise TargetError(f"allocation={allocation!r}; use one of {', '.join(ALLOCATIONS)}")
        if not 0.0 < max_group_ratio <= 1.0:
            raise TargetError(f"max_group_ratio must be in (0, 1], got {max_group_ratio}")
        self.analysis = analysis
        self.units = units
        self.target = None if target is None else parse_target(target)
        self.allocation = allocation
        self.cost_power = float(cost_power)
        self.max_group_ratio = float(max_group_ratio)
        self.kind = "ratio" if self.target is None else self.target.kind
        if self.target is None:
            self.goal = 0.0
        else:
            self.goal = 1.0 - self.target.value if self.kind == "ratio" else self.target.value
        """Fraction of the target's kind that the compiled model may keep (0 without a target)."""
        self.full = self._measure(np.zeros(units.count, dtype=bool), raw=True)
        self._constraints, self._constraints_of = self._member_constraints()
        self.unit_cost = self._unit_costs()
        self.floor = self.kept(self.select(np.ones(units.count), 0.0))
        """The smallest share reachable (every removable unit zeroed)."""
        if self.target is not None and self.floor > self.goal + 1e-9:
            raise TargetError(
                f"{self.target} cannot be reached: zeroing every removable channel of the "
                f"{len(units.groups)} prunable groups still keeps {self.floor:.1%} of the {self._what()} "
                "(the rest is in pinned, not zero-invariant or unprunable layers). The closest reachable "
                "target is "
                f"{self.target.kind}={self._as_target(self.floor):.3f}.")

    def _what(self) -> str:
        return {"macs": "MACs", "params": "parameters", "ratio": "prunable channels"}[self.kind]

    def _as_target(self, kept: float) -> float:
        return 1.0 - kept if self.kind == "ratio" else kept

    # ---- measuring ---------------------------------------------------------------------------

    def _measure(self, removed: np.ndarray, raw: bool = False) -> float:
        kind = self.kind
        if kind == "ratio":
            return float(self.units.count - int(removed.sum()))
        masks = self.units.masks(removed)
        shapes = self.analysis.new_shapes(self.analysis.keep_mask(masks)) if masks else None
        graph = self.analysis.graph
        return float(graph_macs(graph, shapes) if kind == "macs" else graph_params(graph, shapes))

    def kept(self, removed: np.ndarray) -> float:
        """Share of the target's kind the compiled model keeps when `removed` (bool per unit) go."""
        return self._measure(np.asarray(removed, dtype=bool)) / self.full if self.full else 1.0

    def _unit_costs(self) -> np.ndarray:
        """Share saved by removing one channel of each group alone, normalized to mean 1."""
        cost = np.ones(self.units.count)
        if self.kind != "ratio":
            for g in self.units.groups:
                one = np.zeros(self.units.count, dtype=bool)
                one[self.units.offset[g.id]] = True
                start = self.units.offset[g.id]
                cost[start: start + g.channel_count] = max(0.0, 1.0 - self.kept(one))
        mean = float(cost.mean())
        return cost / mean if mean > 0 else np.ones(self.units.count)

    # ---- which units may go together --------------------------------------------------------

    def _member_constraints(self) -> tuple[list[int], list[list[int]]]:
        """Each distinct channel set of a member (and each whole group) must keep one channel."""
        sizes: list[int] = []
        of_unit: list[list[int]] = [[] for _ in range(self.units.count)]
        for g in self.units.groups:
            start = self.units.offset[g.id]
            seen: set[tuple[int, ...]] = set()
            for chans in [np.arange(g.channel_count), *g.channel_of]:
                key = tuple(np.unique(np.asarray(chans, dtype=np.int64)).tolist())
                if not key or key in seen:
                    continue
                seen.add(key)
                cid = len(sizes)
                sizes.append(len(key))
                for c in key:
                    of_unit[start + c].append(cid)
        return sizes, of_unit

    def order(self, priority: np.ndarray, fixed: np.ndarray, eligible: np.ndarray,
              cap: float = 1.0) -> np.ndarray:
        """Eligible units in global removal order (lowest group-normalized priority per unit of
        cost first), skipping any unit whose removal, after `fixed` and the units before it, would
        empty a member of its group or take more than `cap` of its group's channels.
        """
        remaining = list(self._constraints)
        taken = np.zeros(len(self.units.groups), dtype=np.int64)
        group_index = {g.id: i for i, g in enumerate(self.units.groups)}
        gidx = np.array([group_index[int(g)] for g in self.units.group_of], dtype=np.int64)
        sizes = np.array([g.channel_count for g in self.units.groups])
        for u in np.flatnonzero(fixed):
            taken[gidx[u]] += 1
            for c in self._constraints_of[u]:
                remaining[c] -= 1
        pri = np.asarray(priority, dtype=np.float64)
        means = np.array([pri[gidx == i].mean() for i in range(len(sizes))])
        rank = pri / np.where(means[gidx] > 0, means[gidx], 1.0)
        rank = rank / np.power(np.maximum(self.unit_cost, 1e-12), self.cost_power)
        candidates = np.flatnonzero(np.asarray(eligible, dtype=bool) & ~np.asarray(fixed, dtype=bool))
        out: list[int] = []
        for u in candidates[np.argsort(rank[candidates], kind="stable")]:
            cons = self._constraints_of[u]
            if taken[gidx[u]] + 1 > cap * sizes[gidx[u]] + 1e-9:
                continue
            if all(remaining[c] > 1 for c in cons):
                for c in cons:
                    remaining[c] -= 1
                taken[gidx[u]] += 1
                out.append(int(u))
        return np.asarray(out, dtype=np.int64)

    def _uniform_sequence(self, priority: np.ndarray, fixed: np.ndarray, eligible: np.ndarray) -> np.ndarray:
        """Units in an order whose every prefix removes nearly the same fraction of each group: the
        i-th removable unit of group g (lowest priority first) comes at fraction (fixed_g + i + 1) / C_g.
        """
        ranked = self.order(priority, fixed, eligible)  # one cost per group: order within = priority
        keys = np.zeros(len(ranked))
        for g in self.units.groups:
            start = self.units.offset[g.id]
            inside = np.flatnonzero((ranked >= start) & (ranked < start + g.channel_count))
            done = int(fixed[start: start + g.channel_count].sum())
            keys[inside] = (done + np.arange(1, len(inside) + 1)) / g.channel_count
        return ranked[np.argsort(keys, kind="stable")]

    def select(self, priority: np.ndarray, goal: float, fixed: np.ndarray | None = None,
               eligible: np.ndarray | None = None) -> np.ndarray:
        """`fixed` plus the fewest lowest-priority units (per the allocation) whose compiled model
        keeps <= `goal`.

        Args:
            priority: per unit, higher means more important (kept longer).
            goal: share of the target's kind the compiled model may keep.
            fixed: units already chosen (bool per unit).
            eligible: units that may be added (bool per unit); default all.

        Returns:
            Bool per unit. If even every eligible unit cannot reach `goal`, all of them are chosen.

        """
        n = self.units.count
        fixed = np.zeros(n, dtype=bool) if fixed is None else np.asarray(fixed, dtype=bool)
        eligible = np.ones(n, dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
        if self.kept(fixed) <= goal + 1e-12:
            return fixed.copy()
        if self.allocation == "uniform":
            ranked = self._uniform_sequence(priority, fixed, eligible)
        else:
            ranked = self.order(priority, fixed, eligible, self.max_group_ratio)

        def with_prefix(k: int) -> np.ndarray:
            chosen = fixed.copy()
            chosen[ranked[:k]] = True
            return chosen

        return with_prefix(self._smallest(len(ranked), lambda k: self.kept(with_prefix(k)) <= goal + 1e-12))

    @staticmethod
    def _smallest(n: int, ok: Callable[[int], bool]) -> int:
        """Smallest k in [0, n] with ok(k) (ok monotone); n when none is."""
        if not ok(n):
            return n
        lo, hi = -1, n
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if ok(mid):
                hi = mid
            else:
                lo = mid
        return hi

    def schedule(self, periods: int) -> list[float]:
        """Goal after each of `periods` progressive steps: the removed share grows linearly."""
        return [1.0 - (1.0 - self.goal) * (p + 1) / periods for p in range(periods)]
