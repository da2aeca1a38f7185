"""Uniform selection: remove the same fraction of every group's channels, lowest scores first.

With a ratio, that fraction is the ratio. With a MACs, parameter or latency target, the fraction is
found by bisection and the plan then lands within `tolerance` of the target (see prunec.selection).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from prunec.analysis.result import Analysis
from prunec.pipeline import Artifact, Pass, PassResult, PruneState, register_pass
from prunec.selection import Limits, Masks, keep_every_axis, masks_from_plan, shape_cost, uniform_family
from prunec.targets import run_selection


def keep_count(channels: int, ratio: float, round_to: int | None, min_keep: int) -> int:
    """Channels a group of `channels` keeps when `ratio` of them are removed."""
    return Limits(min_keep=min_keep, round_to=round_to).keep_for_ratio(channels, ratio)


def plan_uniform(analysis: Analysis, scores: Mapping[int, np.ndarray], ratio: float,
                 round_to: int | None = None, min_keep: int = 1) -> Masks:
    """Group id -> channels to remove (lowest scores; ties broken by channel number)."""
    limits = Limits(min_keep=min_keep, round_to=round_to)
    masks = masks_from_plan(analysis.groups, scores, uniform_family(analysis.groups, limits).plan(ratio))
    return keep_every_axis(analysis, masks, scores)


def kept_fraction(analysis: Analysis, masks: Mapping[int, tuple[int, ...]], kind: str) -> float:
    """Fraction of MACs or parameters the pruned model keeps."""
    return shape_cost(analysis, kind)(dict(masks))


def search_ratio(analysis: Analysis, scores: Mapping[int, np.ndarray], target: Any,
                 round_to: int | None, min_keep: int, max_ratio: float = 0.99) -> float:
    """Smallest uniform ratio whose pruned model keeps at most `target.value` of the target kind
    (before landing).
    """
    from prunec.allocation import allocate

    limits = Limits(min_keep=min_keep, round_to=round_to, max_ratio=max_ratio)
    family = uniform_family(analysis.groups, limits)
    found = allocate(analysis.groups, scores, family, shape_cost(analysis, target.kind), target.value,
                     target.kind, tolerance=1.0)
    return found.parameter


@register_pass("select-uniform")
@dataclass(frozen=True)
class SelectUniformPass(Pass):
    """Remove the same fraction of every group's channels (the lowest-scoring ones)."""

    requires: ClassVar = frozenset({Artifact.ANALYSIS, Artifact.SCORES})
    provides: ClassVar = frozenset({Artifact.MASKS})

    ratio: float | None = None
    """Fraction of channels to remove; when None, the state's target decides."""
    target: str | None = None
    """'macs=0.5', 'params=0.5' or 'latency=0.5' (overrides the state's target)."""
    round_to: int | None = None
    min_keep: int = 1
    max_ratio: float = 0.99
    """Never remove more than this fraction of one group's channels."""
    overrides: Mapping[str, float] | None = None
    """Module path -> fraction of its channels to remove, fixed (0 keeps them)."""
    tolerance: float = 0.02
    """A MACs/params/latency target must be met within this relative margin (from below)."""
    latency: Any = None
    """A prunec.latency.LatencyModel for latency targets (default: built for the example inputs)."""

    def run(self, state: PruneState) -> PassResult:
        return PassResult(*run_selection(state, "uniform", self))
