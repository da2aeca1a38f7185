"""AtomTable: every index of every axis of every value gets one integer id (an 'atom').

Couplings become edges between atoms and pins become flags on atoms, so the whole channel analysis
is one vectorized connected-components problem, linear in the number of atoms.
"""

from __future__ import annotations

import numpy as np

from prunec.ir.graph import Graph, Value
from prunec.ir.slots import Slot


class AtomTable:
    """Contiguous atom ranges, one per slot (value, axis), in value definition order."""

    def __init__(self, graph: Graph) -> None:
        self.slot_ids: dict[Slot, int] = {}
        self.slot_value: list[str] = []
        self.slot_axis: list[int] = []
        self.value_slot0: dict[str, int] = {}
        starts: list[int] = []
        sizes: list[int] = []
        total = 0
        for v in graph.values():
            self.value_slot0[v.name] = len(starts)
            for k, n in enumerate(v.shape):
                self.slot_ids[Slot(v.name, k)] = len(starts)
                self.slot_value.append(v.name)
                self.slot_axis.append(k)
                starts.append(total)
                sizes.append(int(n))
                total += int(n)
        self.slot_start = np.asarray(starts, dtype=np.int64)
        self.slot_size = np.asarray(sizes, dtype=np.int64)
        self.total = total

    def slot_id(self, slot: Slot) -> int:
        """The id of `slot` (KeyError if the value has no such axis)."""
        return self.slot_ids[slot]

    def slots_of(self, value: Value) -> list[int]:
        """Slot ids of every axis of `value`."""
        first = self.value_slot0[value.name]
        return list(range(first, first + value.rank))

    def atoms(self, slot_id: int, indices: np.ndarray | None = None) -> np.ndarray:
        """Atom ids of a slot (or of some of its indices)."""
        start = int(self.slot_start[slot_id])
        if indices is None:
            return np.arange(start, start + int(self.slot_size[slot_id]), dtype=np.int64)
        return start + np.asarray(indices, dtype=np.int64)

    def slot_of_atoms(self, atoms: np.ndarray) -> np.ndarray:
        """Slot id of each atom."""
        return np.searchsorted(self.slot_start, atoms, side="right") - 1

    def kept_counts(self, keep: np.ndarray) -> np.ndarray:
        """Number of kept atoms per slot, for a boolean keep mask over atoms."""
        if self.total == 0:
            return np.zeros(len(self.slot_start), dtype=np.int64)
        csum = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])
        return csum[self.slot_start + self.slot_size] - csum[self.slot_start]
