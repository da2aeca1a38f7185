"""Uniform selection: remove the same fraction of every group's channels, lowest scores first.

With a ratio, that fraction is the ratio. With a MACs or parameter target, the fraction is found
by bisection so that the pruned model keeps at most the requested share.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from prunec.analysis.cost import graph_macs, graph_params
from prunec.analysis.result import Analysis
from prunec.errors import TargetError
from prunec.pipeline import Artifact, Pass, PassResult, PruneState, register_pass
from prunec.selection import keep_every_member, lowest
from prunec.targets import Target


def keep_count(channels: int, ratio: float, round_to: int | None, min_keep: int) -> int:
    """Channels a group of `channels` keeps when `ratio` of them are removed."""
    keep = channels - int(np.floor(channels * ratio + 1e-9))
    if round_to and round_to > 1 and channels > round_to:
        keep = int(np.floor(keep / round_to + 0.5)) * round_to
        keep = min(max(keep, round_to), channels)
    return int(min(channels, max(keep, min_keep)))


def plan_uniform(analysis: Analysis, scores: Mapping[int, np.ndarray], ratio: float,
                 round_to: int | None = None, min_keep: int = 1) -> dict[int, tuple[int, ...]]:
    """Group id -> channels to remove (lowest scores; ties broken by channel number)."""
    masks: dict[int, tuple[int, ...]] = {}
    for g in analysis.groups:
        keep = keep_count(g.channel_count, ratio, round_to, min_keep)
        removed = lowest(scores[g.id], g.channel_count - keep)
        masks[g.id] = tuple(keep_every_member(g, removed, scores[g.id]))
    return masks


def kept_fraction(analysis: Analysis, masks: Mapping[int, tuple[int, ...]], kind: str) -> float:
    """Fraction of MACs or parameters the pruned model keeps."""
    shapes = analysis.new_shapes(analysis.keep_mask(masks))
    if kind == "macs":
        before = graph_macs(analysis.graph)
        return graph_macs(analysis.graph, shapes) / before if before else 1.0
    before = graph_params(analysis.graph)
    return graph_params(analysis.graph, shapes) / before if before else 1.0


def search_ratio(analysis: Analysis, scores: Mapping[int, np.ndarray], target: Target,
                 round_to: int | None, min_keep: int, max_ratio: float = 0.99) -> float:
    """Smallest uniform ratio whose pruned model keeps at most `target.value` of the target kind."""
    if target.kind not in ("macs", "params"):
        raise TargetError(f"select-uniform supports ratio, macs and params targets, not {target.kind!r}")
    best = kept_fraction(analysis, plan_uniform(analysis, scores, max_ratio, round_to, min_keep), target.kind)
    if best > target.value + 1e-9:
        raise TargetError(
            f"{target} cannot be reached: removing {max_ratio:.0%} of every prunable group still keeps "
            f"{best:.1%} of the {target.kind} (the rest is in pinned or unprunable layers). The closest "
            f"achievable target is {target.kind}={best:.3f}.")
    lo, hi = 0.0, max_ratio
    for _ in range(30):
        mid = (lo + hi) / 2
        if kept_fraction(analysis, plan_uniform(analysis, scores, mid, round_to, min_keep), target.kind) <= target.value:
            hi = mid
        else:
            lo = mid
    return hi


@register_pass("select-uniform")
@dataclass(frozen=True)
class SelectUniformPass(Pass):
    """Remove the same fraction of every group's channels (the lowest-scoring ones)."""

    requires: ClassVar = frozenset({Artifact.ANALYSIS, Artifact.SCORES})
    provides: ClassVar = frozenset({Artifact.MASKS})

    ratio: float | None = None
    """Fraction of channels to remove; when None, the state's target decides."""
    target: str | None = None
    """'macs=0.5' or 'params=0.5' (overrides the state's target)."""
    round_to: int | None = None
    min_keep: int = 1

    def run(self, state: PruneState) -> PassResult:
        analysis, scores = state.analysis, state.scores
        assert analysis is not None and scores is not None  # guaranteed by `requires`
        round_to = self.round_to if self.round_to is not None else state.round_to
        target = Target.parse(self.target) if self.target else state.target
        if self.ratio is not None:
            target = Target("ratio", self.ratio)
        if target is None:
            raise TargetError("select-uniform needs a ratio or a target: ratio=0.5 or target='macs=0.5'")
        if target.kind == "ratio":
            ratio = target.value
        else:
            ratio = search_ratio(analysis, scores, target, round_to, self.min_keep)
        masks = plan_uniform(analysis, scores, ratio, round_to, self.min_keep)
        new = state.replace(masks=masks).note(f"uniform ratio {ratio:.4f} per group")
        return PassResult(new, changed=any(masks.values()))
