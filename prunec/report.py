"""PruneReport: params/MACs before and after, groups, pins and why, verification."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from prunec.analysis.cost import graph_macs
from prunec.analysis.coupling import Pinned
from prunec.analysis.groups import PinnedParam
from prunec.verify import VerificationReport


def _human(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return f"{n:.0f}"


@dataclass(frozen=True)
class LayerChange:
    """One parameter axis that shrank."""

    param: str
    dim: int
    before: int
    after: int


@dataclass(frozen=True)
class PruneReport:
    """What a prune did, in numbers."""

    model: str
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    groups_found: int
    groups_pruned: int
    channels_total: int
    channels_removed: int
    output_kind: str
    verification: VerificationReport | None
    pinned: tuple[Pinned, ...] = ()
    pinned_params: tuple[PinnedParam, ...] = ()
    not_zero_invariant: tuple[str, ...] = ()
    """Removed groups where removal differs from zeroing, with the op that mixes their channels."""
    layers: tuple[LayerChange, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def params_ratio(self) -> float:
        """Fraction of parameters kept."""
        return self.params_after / self.params_before if self.params_before else 1.0

    @property
    def macs_ratio(self) -> float:
        """Fraction of MACs kept."""
        return self.macs_after / self.macs_before if self.macs_before else 1.0

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for JSON)."""
        d = asdict(self)
        d["verification"] = None if self.verification is None else asdict(self.verification)
        d["params_ratio"], d["macs_ratio"] = self.params_ratio, self.macs_ratio
        return d

    def __str__(self) -> str:
        lines = [
            f"prunec report: {self.model}",
            f"  {'':14}{'before':>12}{'after':>12}{'kept':>9}",
            f"  {'parameters':14}{_human(self.params_before):>12}{_human(self.params_after):>12}"
            f"{self.params_ratio:>9.1%}",
            f"  {'MACs':14}{_human(self.macs_before):>12}{_human(self.macs_after):>12}{self.macs_ratio:>9.1%}",
            f"  groups: {self.groups_found} found, {self.groups_pruned} pruned; channels: "
            f"{self.channels_removed} of {self.channels_total} removed",
            f"  output: {self.output_kind}",
        ]
        if self.verification is not None:
            lines.append(f"  {self.verification}")
        if self.not_zero_invariant:
            lines.append(f"  {len(self.not_zero_invariant)} removed group(s) are not zero-invariant "
                         "(verified against the removal reference):")
            lines += [f"    {t}" for t in self.not_zero_invariant[:10]]
        if self.pinned:
            lines.append(f"  pinned nodes ({len(self.pinned)}):")
            lines += [f"    {p}" for p in self.pinned[:20]]
        if self.pinned_params:
            reasons = Counter(p.reason for p in self.pinned_params)
            lines.append(f"  unprunable parameter axes ({len(self.pinned_params)}), by reason:")
            lines += [f"    {n:4d} x {r}" for r, n in reasons.most_common(8)]
        for n in self.notes:
            lines.append(f"  note: {n}")
        return "\n".join(lines)


def build_report(analysis: Any, keep: Any, removed: Sequence[Any], *, model: str, params_before: int,
                 params_after: int, output_kind: str, verification: VerificationReport | None,
                 notes: tuple[str, ...], shape_of: Callable[[str], Sequence[int]]) -> PruneReport:
    """The report of a prune of `analysis` that keeps `keep` and removed `removed`, for torch and
    ONNX alike; `shape_of(param)` is the original shape of a state tensor."""
    layers = [LayerChange(name, dim, shape_of(name)[dim], len(kept))
              for name, axes in analysis.state_changes(keep).items() for dim, kept in axes.items()]
    return PruneReport(
        model=model,
        params_before=params_before,
        params_after=params_after,
        macs_before=graph_macs(analysis.graph),
        macs_after=graph_macs(analysis.graph, analysis.new_shapes(keep)),
        groups_found=len(analysis.groups),
        groups_pruned=len(removed),
        channels_total=analysis.prunable_channels,
        channels_removed=sum(len(r.channels) for r in removed),
        output_kind=output_kind,
        verification=verification,
        pinned=analysis.pinned,
        pinned_params=analysis.pinned_params,
        not_zero_invariant=tuple(f"{r.name}: {'; '.join(r.notes)}" for r in removed if not r.zero_invariant),
        layers=tuple(layers),
        notes=notes,
    )
