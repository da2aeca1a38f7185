"""Global selection: one ranking of every channel across groups, cut at a threshold.

Scores from relative criteria arrive mean-normalized per group (the score pass does it), absolute
criteria (Taylor, Hessian, LAMP) arrive on their common scale, so one threshold compares like with
like. With a MACs, parameter or latency target the threshold is found by bisection and the plan
lands within `tolerance` of the target; limits (min_keep, max_ratio, round_to, overrides) hold per
group.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from prunec.pipeline import Artifact, Pass, PassResult, PruneState, register_pass
from prunec.targets import run_selection


@register_pass("select-global")
@dataclass(frozen=True)
class SelectGlobalPass(Pass):
    """Drop the lowest-scoring channels across all groups until the target is met."""

    requires: ClassVar = frozenset({Artifact.ANALYSIS, Artifact.SCORES})
    provides: ClassVar = frozenset({Artifact.MASKS})

    ratio: float | None = None
    """Fraction of all channels to remove; when None, the state's target decides."""
    target: str | None = None
    round_to: int | None = None
    min_keep: int = 1
    max_ratio: float = 0.9
    """Never remove more than this fraction of one group's channels (a global ranking would
    otherwise empty the least important layers first)."""
    overrides: Mapping[str, float] | None = None
    tolerance: float = 0.02
    latency: Any = None

    def run(self, state: PruneState) -> PassResult:
        return PassResult(*run_selection(state, "global", self))
