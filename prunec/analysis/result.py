"""Analysis: the traced graph, its zero-invariant groups, and what was pinned and why."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from prunec.analysis.coupling import CouplingResult, Pinned
from prunec.analysis.groups import Group, PinnedParam, removal_keep_mask
from prunec.errors import PruneError
from prunec.ir.graph import Graph


@dataclass(frozen=True, eq=False)
class Analysis:
    """Result of `prunec.analyze`: groups of coupled parameter slices and the pins."""

    graph: Graph
    groups: tuple[Group, ...]
    pinned: tuple[Pinned, ...]
    """Nodes whose channels were left unpruned because no rule describes them (or it declined)."""
    pinned_params: tuple[PinnedParam, ...]
    """Parameter axes that stay whole, each with the first reason found."""
    coupling: CouplingResult = field(repr=False)
    source: Any = field(default=None, repr=False)
    """The frontend's artifact (torch: TracedTorch; ONNX: the loaded model)."""
    ignored: tuple[str, ...] = ()
    """Module paths whose output channels were kept on request (`ignore=`)."""
    attention: str = "heads"
    """The attention grouping analysed ('heads' or 'head_dim')."""

    def group(self, group_id: int) -> Group:
        """The group with that id."""
        for g in self.groups:
            if g.id == group_id:
                return g
        raise PruneError(f"no group with id {group_id}; ids run 0..{len(self.groups) - 1}")

    @property
    def prunable_channels(self) -> int:
        """Total number of channels over all groups."""
        return sum(g.channel_count for g in self.groups)

    def keep_mask(self, removed: Mapping[int, Sequence[int]]) -> np.ndarray:
        """Boolean mask over atoms: False where a removed channel's atoms are."""
        return removal_keep_mask(self.coupling, self.groups, removed)

    def new_shapes(self, keep: np.ndarray) -> dict[str, tuple[int, ...]]:
        """Shape of every value after removing the atoms not in `keep`."""
        counts = self.coupling.atoms.kept_counts(keep)
        table = self.coupling.atoms
        out: dict[str, tuple[int, ...]] = {}
        for v in self.graph.values():
            s0 = table.value_slot0[v.name]
            out[v.name] = tuple(int(c) for c in counts[s0: s0 + v.rank])
        return out

    def kept_indices(self, keep: np.ndarray, value: str, axis: int) -> np.ndarray:
        """Original indices kept along `axis` of `value`."""
        table = self.coupling.atoms
        sid = table.value_slot0[value] + axis
        start, size = int(table.slot_start[sid]), int(table.slot_size[sid])
        return np.flatnonzero(keep[start: start + size])

    def removed_axes(self, keep: np.ndarray, value: str) -> dict[int, np.ndarray]:
        """Axis -> kept indices, for the axes of `value` that lose atoms."""
        v = self.graph.value(value)
        out: dict[int, np.ndarray] = {}
        for k in range(v.rank):
            kept = self.kept_indices(keep, value, k)
            if len(kept) != v.shape[k]:
                out[k] = kept
        return out

    def state_changes(self, keep: np.ndarray) -> dict[str, dict[int, np.ndarray]]:
        """state_dict name -> {axis: kept indices} for every parameter/buffer that shrinks."""
        out: dict[str, dict[int, np.ndarray]] = {}
        for v in self.graph.state_values():
            axes = self.removed_axes(keep, v.name)
            if axes:
                out[str(v.param)] = axes
        return out

    def aliases(self, param: str) -> tuple[str, ...]:
        """Every state_dict name of the same tensor as `param` (tied weights)."""
        for v in self.graph.state_values():
            if v.param == param:
                return (param, *v.aliases)
        return (param,)

    def component_groups(self) -> np.ndarray:
        """Group id of every atom component (-1 for components in no group)."""
        out = np.full(self.coupling.num_components, -1, dtype=np.int64)
        for g in self.groups:
            out[g.components] = g.id
        return out

    def explain(self, name: str) -> str:
        """Say which rules coupled the channels of `name`, and why any of them are pinned.

        `name` is a parameter (state_dict name), an op node or a value; see `prunec.explain.explain`.
        """
        from prunec.explain import explain

        return explain(self, name)

    def __str__(self) -> str:
        from prunec.ir.printer import format_analysis

        return format_analysis(self)
