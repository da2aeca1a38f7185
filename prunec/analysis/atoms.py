"""AtomTable: every index of every axis of every value gets one integer id (an 'atom').

Couplings become edges between atoms and pins become flags on atoms, so the whole channel analysis
is one vectorized connected-components problem, linear in the number of atoms.
"""

from __future__ import annotations

import itertools

import numpy as np

from prunec.ir.graph import Graph, Value
from prunec.ir.slots import Slot


class AtomTable:
    """Contiguous atom ranges, one per slot (value, axis), in value definition order."""

    def __init__(self, graph: Graph) -> None:
        values = list(graph.values())
        names = [v.name for v in values]
        ranks = [len(v.shape) for v in values]
        firsts = list(itertools.accumulate(ranks, initial=0))
        self.value_slot0: dict[str, int] = dict(zip(names, firsts))
        self.value_rank: dict[str, int] = dict(zip(names, ranks))
        self.slot_value: list[str] = [name for name, rank in zip(names, ranks) for _ in range(rank)]
        self.slot_axis: list[int] = [axis for rank in ranks for axis in range(rank)]
        sizes = [size for v in values for size in v.shape]
        state = [slot for v, first, rank in zip(values, firsts, ranks) if v.is_state
                 for slot in range(first, first + rank)]
        self.slot_sizes: list[int] = sizes
        """Size of each slot, as Python ints (slot_size as an array)."""
        self.slot_size = np.asarray(sizes, dtype=np.int64)
        self.state_slots = np.asarray(state, dtype=np.int64)
        """Slot ids of every axis of every parameter and buffer, in definition order."""
        ends = np.cumsum(self.slot_size)
        self.slot_start = ends - self.slot_size
        self.total = int(ends[-1]) if len(ends) else 0

    def slot_id(self, slot: Slot) -> int:
        """The id of `slot` (KeyError if the value has no such axis)."""
        first = self.value_slot0[slot.value]
        if not 0 <= slot.axis < self.value_rank[slot.value]:
            raise KeyError(slot)
        return first + slot.axis

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

    def atoms_of_slots(self, slot_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every atom of the given slots, in order, and the slot of each."""
        slot_ids = np.asarray(slot_ids, dtype=np.int64)
        sizes = self.slot_size[slot_ids]
        return expand_ranges(self.slot_start[slot_ids], sizes), np.repeat(slot_ids, sizes)

    def slot_of_atoms(self, atoms: np.ndarray) -> np.ndarray:
        """Slot id of each atom."""
        return np.searchsorted(self.slot_start, atoms, side="right") - 1

    def kept_counts(self, keep: np.ndarray) -> np.ndarray:
        """Number of kept atoms per slot, for a boolean keep mask over atoms."""
        if self.total == 0:
            return np.zeros(len(self.slot_start), dtype=np.int64)
        csum = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])
        return csum[self.slot_start + self.slot_size] - csum[self.slot_start]


def expand_ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """starts[i], starts[i] + 1, ..., starts[i] + counts[i] - 1 for every i, concatenated."""
    within = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.repeat(starts, counts) + within
