"""Pruning targets: what fraction to keep, of what."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prunec.errors import TargetError

KINDS = ("ratio", "macs", "params", "latency")


@dataclass(frozen=True)
class Target:
    """`kind='ratio'`: remove that fraction of every group's channels. `macs`/`params`/`latency`:
    keep that fraction of the model's MACs / parameters / measured latency.
    """

    kind: str
    value: float

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise TargetError(f"unknown target kind {self.kind!r}; use one of {', '.join(KINDS)}")
        v = self.value
        if not isinstance(v, (int, float)) or v != v:
            raise TargetError(f"target {self.kind} must be a number, got {v!r}")
        if self.kind == "ratio" and not 0.0 <= v < 1.0:
            raise TargetError(f"ratio={v} is the fraction of channels to REMOVE and must be in [0, 1); "
                              "ratio=0.5 removes half of every group's channels")
        if self.kind != "ratio" and not 0.0 < v <= 1.0:
            raise TargetError(f"{self.kind}={v} is the fraction of {self.kind} to KEEP and must be in (0, 1]; "
                              f"{self.kind}=0.5 keeps half")

    @classmethod
    def parse(cls, text: str | Target) -> Target:
        """'macs=0.5', 'params=0.3', 'latency=0.5' or 'ratio=0.4'."""
        if isinstance(text, Target):
            return text
        kind, eq, value = str(text).partition("=")
        if not eq:
            raise TargetError(f"target {text!r} must look like 'macs=0.5', 'params=0.5', 'latency=0.5' "
                              "or 'ratio=0.5'")
        try:
            number = float(value)
        except ValueError:
            raise TargetError(f"target {text!r}: {value!r} is not a number") from None
        return cls(kind.strip().lower(), number)

    def __str__(self) -> str:
        return f"{self.kind}={self.value:g}"


def run_selection(state: Any, strategy: str, options: Any) -> tuple[Any, bool]:
    """Shared body of the selection passes: read the target, apply the limits, choose the masks.

    `options` is the pass (its fields ratio, target, round_to, min_keep, max_ratio, overrides,
    tolerance, latency). Returns the new state, with a report note, and whether anything is removed.
    """
    from prunec.allocation import allocate
    from prunec.selection import (
        Limits,
        keep_every_axis,
        pick_family,
        resolve_overrides,
        select_for_ratio,
        shape_cost,
    )

    analysis, scores = state.analysis, state.scores
    if analysis is None or scores is None:
        raise TargetError("selection needs the analysis and scores: run a criterion pass before it")
    round_to = options.round_to if options.round_to is not None else state.round_to
    target = Target.parse(options.target) if options.target else state.target
    if options.ratio is not None:
        target = Target("ratio", options.ratio)
    if target is None:
        raise TargetError(f"select-{strategy} needs a ratio or a target: ratio=0.5 or target='macs=0.5'")
    groups = analysis.groups
    limits = Limits(min_keep=options.min_keep, max_ratio=options.max_ratio, round_to=round_to,
                    fixed=resolve_overrides(groups, options.overrides))
    family = pick_family(strategy, groups, scores, limits)
    if target.kind == "ratio":
        masks = select_for_ratio(groups, scores, family, target.value, limits)
        note = f"{strategy} selection: ratio {target.value:g}"
    elif target.kind in ("macs", "params"):
        found = allocate(groups, scores, family, shape_cost(analysis, target.kind), target.value,
                         target.kind, options.tolerance, limits.max_ratio)
        masks = found.masks
        note = f"{strategy} selection: {target.kind} kept {found.kept:.4f} (target {target.value:g})"
    else:
        from prunec.latency import allocate_latency

        masks, note = allocate_latency(state, family, target.value, options.tolerance, options.latency,
                                       max_ratio=limits.max_ratio)
    masks = keep_every_axis(analysis, masks, scores)  # never empty a tensor axis (fused q/k + v dims)
    return state.replace(masks=masks).note(note), any(masks.values())
