"""Turning scores into removals: per-group limits, plans and the families selection searches.

A plan gives each group a number of channels to keep; the channels removed are the lowest-scoring
ones. A selection strategy (uniform, global ranking) is a one-parameter family of plans that keep
less as the parameter grows; `prunec.allocation` searches a family for a MACs, parameter or latency
target. Limits (min_keep, max_ratio, round_to, per-module overrides) decide which keep counts a
group may take at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from prunec.analysis.cost import graph_macs, graph_params
from prunec.analysis.groups import Group
from prunec.analysis.result import Analysis
from prunec.errors import TargetError

Masks = dict[int, tuple[int, ...]]
Plan = dict[int, int]
"""Group id -> number of channels kept."""


def lowest(scores: np.ndarray, count: int) -> list[int]:
    """The `count` channels with the lowest scores (ties broken by channel number)."""
    order = np.argsort(np.asarray(scores, dtype=np.float64), kind="stable")
    return sorted(int(c) for c in order[:max(0, count)])


def keep_every_member(group: Group, removed: list[int], scores: np.ndarray) -> list[int]:
    """Give back the best channel of any member that would lose all its entries.

    A group can span several producers (a DenseNet block, an Inception concat): removing by score
    alone could empty one conv entirely, which no module can represent. To keep the number of
    removed channels (and so `round_to`), as many of the lowest-scoring kept channels are removed
    instead, where that empties no member.
    """
    scores = np.asarray(scores, dtype=np.float64)
    gone = np.zeros(group.channel_count, dtype=bool)
    gone[np.asarray(removed, dtype=np.int64)] = True
    members = [np.unique(c) for c in group.channel_of]
    given_back = 0
    for touched in members:
        if len(touched) and gone[touched].all():
            gone[touched[np.argmax(scores[touched])]] = False
            given_back += 1
    for c in np.argsort(scores, kind="stable"):
        if given_back == 0:
            break
        if gone[c]:
            continue
        gone[c] = True
        if any(len(t) and gone[t].all() for t in members if c in t):
            gone[c] = False
            continue
        given_back -= 1
    return [int(c) for c in np.flatnonzero(gone)]


def finalize(groups: Mapping[int, Group], removed: Mapping[int, list[int]],
             scores: Mapping[int, np.ndarray]) -> dict[int, tuple[int, ...]]:
    """Apply `keep_every_member` to every group and freeze the result."""
    return {gid: tuple(keep_every_member(groups[gid], list(chs), scores[gid]))
            for gid, chs in removed.items()}


@dataclass(frozen=True)
class Limits:
    """What any plan must respect.

    min_keep: every group keeps at least this many channels.
    max_ratio: no group loses more than this fraction of its channels.
    round_to: kept counts are multiples of this (groups no larger than it stay whole-or-multiple).
    fixed: group id -> fraction removed, decided up front (per-module overrides); not searched.
    """

    min_keep: int = 1
    max_ratio: float = 1.0
    round_to: int | None = None
    fixed: Mapping[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.min_keep, bool) or not isinstance(self.min_keep, int) or self.min_keep < 1:
            raise TargetError(f"min_keep must be an integer >= 1 (channels every group keeps), got "
                              f"{self.min_keep!r}")
        if not 0.0 <= self.max_ratio <= 1.0:
            raise TargetError(f"max_ratio={self.max_ratio} is the largest fraction of one group's channels "
                              "that may be removed and must be in [0, 1]")
        if self.round_to is not None and (not isinstance(self.round_to, int) or self.round_to < 1):
            raise TargetError(f"round_to must be a positive integer, got {self.round_to!r}")

    def allowed(self, group: Group) -> np.ndarray:
        """Every keep count the group may take, ascending (always includes the full count)."""
        n = group.channel_count
        if group.id in self.fixed:
            return np.asarray([self.keep_for_ratio(n, self.fixed[group.id], fixed=True)])
        lo = max(min(self.min_keep, n), n - int(np.floor(n * self.max_ratio + 1e-9)))
        counts = np.arange(lo, n + 1)
        if self.round_to and self.round_to > 1 and n > self.round_to:
            counts = counts[(counts % self.round_to == 0) | (counts == n)]
        return counts if len(counts) else np.asarray([n])

    def keep_for_ratio(self, n: int, ratio: float, fixed: bool = False) -> int:
        """Channels a group of `n` keeps when `ratio` of them are removed, rounded and clamped."""
        keep = n - int(np.floor(n * ratio + 1e-9))
        if self.round_to and self.round_to > 1 and n > self.round_to:
            keep = int(np.floor(keep / self.round_to + 0.5)) * self.round_to
            keep = min(max(keep, self.round_to), n)
        keep = max(keep, min(self.min_keep, n))
        if not fixed:
            keep = max(keep, n - int(np.floor(n * self.max_ratio + 1e-9)))
        return int(min(n, keep))


def snap(allowed: np.ndarray, keep: float) -> int:
    """The allowed keep count nearest to `keep` (ties: the larger)."""
    i = int(np.argmin(np.abs(allowed - keep) - 1e-9 * allowed))
    return int(allowed[i])


def masks_from_plan(groups: Sequence[Group], scores: Mapping[int, np.ndarray], plan: Plan) -> Masks:
    """Group id -> removed channels: the lowest-scoring ones beyond each group's kept count."""
    masks: Masks = {}
    for g in groups:
        removed = lowest(scores[g.id], g.channel_count - plan[g.id])
        masks[g.id] = tuple(keep_every_member(g, removed, scores[g.id]))
    return masks


@dataclass(frozen=True)
class Family:
    """A one-parameter family of plans: `plan(x)` keeps fewer channels as x in [0, 1] grows."""

    allowed: Mapping[int, np.ndarray]
    """Group id -> the keep counts the limits allow, ascending."""
    plan: Callable[[float], Plan]


def uniform_family(groups: Sequence[Group], limits: Limits) -> Family:
    """X = the fraction of every group's channels removed."""
    allowed = {g.id: limits.allowed(g) for g in groups}

    def plan(x: float) -> Plan:
        out = {}
        for g in groups:
            if g.id in limits.fixed:
                out[g.id] = int(allowed[g.id][0])
                continue
            keep = limits.keep_for_ratio(g.channel_count, x)
            out[g.id] = snap(allowed[g.id], keep)
        return out
    return Family(allowed, plan)


def global_family(groups: Sequence[Group], scores: Mapping[int, np.ndarray], limits: Limits) -> Family:
    """X = the fraction of all channels (pooled, ranked by score) that falls below the threshold."""
    allowed = {g.id: limits.allowed(g) for g in groups}
    free = [g for g in groups if g.id not in limits.fixed]
    pooled = np.sort(np.concatenate([scores[g.id] for g in free])) if free else np.zeros(0)

    def plan(x: float) -> Plan:
        out = {g.id: int(allowed[g.id][0]) for g in groups if g.id in limits.fixed}
        if not len(pooled):
            return out
        cut = int(np.floor(x * len(pooled)))
        threshold = pooled[cut - 1] if cut > 0 else -np.inf
        for g in free:
            keep = int(np.sum(scores[g.id] > threshold))
            out[g.id] = snap(allowed[g.id], keep)
        return out
    return Family(allowed, plan)


CostFn = Callable[[Masks], float]
"""Masks -> the fraction of the target quantity (MACs, params, latency) the pruned model keeps."""


def shape_cost(analysis: Analysis, kind: str) -> CostFn:
    """Fraction of MACs or parameters kept, computed on the IR."""
    count = graph_macs if kind == "macs" else graph_params
    before = count(analysis.graph)

    def cost(masks: Masks) -> float:
        if not before:
            return 1.0
        return count(analysis.graph, analysis.new_shapes(analysis.keep_mask(masks))) / before
    return cost


def resolve_overrides(groups: Sequence[Group], overrides: Mapping[str, float] | None) -> dict[int, float]:
    """Module path -> fraction removed, turned into group id -> fraction removed.

    A group belongs to a module when one of its producing slices (dim 0) is a parameter of that
    module or of a module inside it. A group claimed by several overrides takes the smallest
    fraction (the most conservative).
    """
    fixed: dict[int, float] = {}
    for path, ratio in (overrides or {}).items():
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 <= ratio < 1.0:
            raise TargetError(f"override {path!r}: {ratio!r} is the fraction of that module's channels to "
                              "remove and must be a number in [0, 1) (0 keeps them all)")
        matched = False
        for g in groups:
            heads = [m for m in g.members if m.dim == 0] or list(g.members)
            if any(_inside(m.param, path) for m in heads):
                fixed[g.id] = min(float(ratio), fixed.get(g.id, 1.0))
                matched = True
        if not matched:
            raise TargetError(f"override {path!r} matches no prunable group: it is not a module of the "
                              "model, or every channel it produces is pinned (see the report's pins)")
    return fixed


def _inside(param: str, path: str) -> bool:
    module = param.rpartition(".")[0]
    return not path or module == path or module.startswith(path + ".")


def pick_family(strategy: str, groups: Sequence[Group], scores: Mapping[int, np.ndarray],
                limits: Limits) -> Family:
    """'uniform' or 'global'."""
    if strategy == "uniform":
        return uniform_family(groups, limits)
    if strategy == "global":
        return global_family(groups, scores, limits)
    raise TargetError(f"selection={strategy!r}; use 'uniform' (the same fraction of every group) or "
                      "'global' (one ranking across groups)")


def select_for_ratio(groups: Sequence[Group], scores: Mapping[int, np.ndarray], family: Family,
                     ratio: float, limits: Limits) -> Masks:
    """Masks removing `ratio` of the channels (per group, or pooled for the global family)."""
    if ratio > limits.max_ratio + 1e-12:
        raise TargetError(f"ratio={ratio:g} contradicts max_ratio={limits.max_ratio:g}: no group may lose "
                          f"more than {limits.max_ratio:.0%} of its channels. The closest achievable "
                          f"target is ratio={limits.max_ratio:g}.")
    return masks_from_plan(groups, scores, family.plan(ratio))


def keep_every_axis(analysis: Analysis, masks: Mapping[int, tuple[int, ...]],
                    scores: Mapping[int, np.ndarray], rounds: int = 8) -> dict[int, tuple[int, ...]]:
    """Give back the best channel of any tensor axis that the removal would empty.

    A group can hold several sets of channels that share a parameter axis but reach different
    tensors (a fused qkv projection's q/k head dims and v head dims): removing by score alone could
    take every channel of one set, leaving a zero-size axis no op can use.
    """
    table, labels = analysis.coupling.atoms, analysis.coupling.labels
    owner = {int(c): (g.id, ch) for g in analysis.groups for ch, c in enumerate(g.components)}
    removed = {gid: set(chs) for gid, chs in masks.items()}
    for _ in range(rounds):
        counts = table.kept_counts(analysis.keep_mask({g: tuple(c) for g, c in removed.items()}))
        empty = np.flatnonzero((counts == 0) & (table.slot_size > 0))
        if not len(empty):
            break
        for sid in empty.tolist():
            comps = np.unique(labels[table.atoms(sid)]).tolist()
            candidates = [owner[c] for c in comps if c in owner and owner[c][1] in removed[owner[c][0]]]
            if len(candidates) < len(comps):
                continue  # a channel given back for an earlier axis already fills this one
            if candidates:
                gid, ch = max(candidates, key=lambda gc: float(scores[gc[0]][gc[1]]))
                removed[gid].discard(ch)
    return {gid: tuple(sorted(chs)) for gid, chs in removed.items()}
