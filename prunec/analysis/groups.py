"""Zero-invariant groups: the public result of the channel analysis.

A `Group` is a set of parameter slices coupled channel by channel (a conv's filters, its BN's
affine and running stats, the next conv's input columns, ...). It has `channel_count` channels;
each channel is one zero-invariant unit: its slices of every member are removed together.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from prunec.analysis.components import components
from prunec.analysis.coupling import CouplingResult
from prunec.ir.graph import Graph


@dataclass(frozen=True, slots=True)
class Slice:
    """Indices `indices` of axis `dim` of state_dict entry `param` (original numbering)."""

    param: str
    dim: int
    indices: tuple[int, ...]

    def __str__(self) -> str:
        return f"{self.param}[dim {self.dim}: {_ranges(self.indices)}]"


def _ranges(idx: Sequence[int]) -> str:
    """Compact text of sorted indices: '0-3,7,9-10'."""
    if not idx:
        return "-"
    out: list[str] = []
    start = prev = idx[0]
    for i in list(idx[1:]) + [None]:  # type: ignore[list-item]
        if i is not None and i == prev + 1:
            prev = i
            continue
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ",".join(out)


@dataclass(frozen=True, eq=False, slots=True)
class Group:
    """Coupled parameter slices; `members` hold every channel, in original numbering."""

    id: int
    members: tuple[Slice, ...]
    channel_count: int
    zero_invariant: bool = True
    notes: tuple[str, ...] = ()
    """Why the group is not zero-invariant (which op mixes its channels), if it is not."""
    channel_of: tuple[np.ndarray, ...] = field(default=(), repr=False)
    """Per member: the group channel (0..channel_count-1) of each entry of `indices`."""
    components: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    """Atom component id of each channel (internal: links channels back to the IR)."""
    kind: str = "mlp"
    """What the channels are, from the ops they reach: 'heads', 'head_dim', 'hidden' or 'mlp'
    (any other width: an MLP's hidden layer, a conv's filters). See prunec.analysis.kinds."""

    @property
    def name(self) -> str:
        """A readable name: the first producing member (a dim-0 slice), else the first member."""
        head = next((m for m in self.members if m.dim == 0), self.members[0])
        return f"{head.param}[{head.dim}]"

    def channel_members(self, channels: Iterable[int]) -> tuple[Slice, ...]:
        """The member slices of the given channels only."""
        chosen = np.zeros(self.channel_count, dtype=bool)
        chosen[np.asarray(list(channels), dtype=np.int64)] = True
        out = []
        for m, ch in zip(self.members, self.channel_of):
            sel = np.asarray(m.indices, dtype=np.int64)[chosen[ch]]
            if len(sel):
                out.append(Slice(m.param, m.dim, tuple(int(i) for i in sel)))
        return tuple(out)

    def select(self, channels: Iterable[int]) -> RemovedGroup:
        """A record of removing `channels` of this group."""
        chans = tuple(sorted({int(c) for c in channels}))
        return RemovedGroup(self.id, self.name, chans, self.channel_members(chans), self.zero_invariant,
                            self.notes, self.kind)

    def __str__(self) -> str:
        zi = "" if self.zero_invariant else "  (not zero-invariant: " + "; ".join(self.notes) + ")"
        lines = [f"group {self.id} '{self.name}': {self.channel_count} channels{zi}"]
        lines += [f"  {m}" for m in self.members]
        return "\n".join(lines)


@dataclass(frozen=True)
class RemovedGroup:
    """The channels removed from one group, as member slices in the original numbering."""

    group_id: int
    name: str
    channels: tuple[int, ...]
    members: tuple[Slice, ...]
    zero_invariant: bool = True
    notes: tuple[str, ...] = ()
    kind: str = "mlp"


@dataclass(frozen=True)
class PinnedParam:
    """An axis of a parameter that stays whole, and the first reason found."""

    param: str
    dim: int
    reason: str


def build_groups(graph: Graph, result: CouplingResult) -> tuple[list[Group], list[PinnedParam]]:
    """Partition the unpinned components holding parameter atoms into groups."""
    table, labels = result.atoms, result.labels
    state_slots = table.state_slots
    if not len(state_slots):
        return [], []
    atoms, slot_of = table.atoms_of_slots(state_slots)
    comp = labels[atoms]
    pinned_params = _pinned_params(graph, result, atoms, slot_of, comp)

    free = ~result.comp_pinned[comp]
    atoms, slot_of, comp = atoms[free], slot_of[free], comp[free]
    if len(atoms) == 0:
        return [], pinned_params

    # every slot lies in one group (the comps sharing a slot are one group): the free atoms of a
    # slot are one contiguous, ascending segment of `atoms`
    seg_lo = np.flatnonzero(np.concatenate([[True], slot_of[1:] != slot_of[:-1]]))
    seg_hi = np.concatenate([seg_lo[1:], [len(atoms)]])
    seg_slot = slot_of[seg_lo]
    nseg, nslots, ncomp = len(seg_lo), len(table.slot_start), result.num_components
    seg_of_slot = np.full(nslots, -1, dtype=np.int64)
    seg_of_slot[seg_slot] = np.arange(nseg)

    # join the segments each comp touches: each atom's segment to one segment of its comp (runs
    # of equal pairs, the atoms of a segment whose comps lie in one other segment, as one edge);
    # a comp's group is that of any of its segments
    seg_of_atom = seg_of_slot[slot_of]
    present = np.zeros(ncomp, dtype=bool)
    present[comp] = True
    ucomps = np.flatnonzero(present)
    rep = np.empty(ncomp, dtype=np.int64)
    rep[comp] = seg_of_atom  # any one of the segments the comp lies in
    a = rep[comp]
    edge = a != seg_of_atom
    edge[1:] &= (a[1:] != a[:-1]) | (seg_of_atom[1:] != seg_of_atom[:-1])
    _, seg_group = components(nseg, a[edge], seg_of_atom[edge])
    comp_group = seg_group[rep[ucomps]]

    # group ids follow the graph: by each group's first atom
    first_atom = np.full(ncomp, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_atom, comp, atoms)
    ngroups = int(seg_group.max()) + 1
    g_first = np.full(ngroups, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(g_first, comp_group, first_atom[ucomps])
    renumber = np.empty(ngroups, dtype=np.int64)
    renumber[np.argsort(g_first, kind="stable")] = np.arange(ngroups)

    # the channels of each group: its components, ordered by their first atom
    by_first = np.lexsort((first_atom[ucomps], comp_group))
    chan_g, chan_c = comp_group[by_first], ucomps[by_first]
    g_bounds = np.flatnonzero(np.diff(chan_g)) + 1
    g_lo = np.concatenate([[0], g_bounds])
    g_hi = np.concatenate([g_bounds, [len(chan_g)]])
    rank_of_comp = np.zeros(ncomp, dtype=np.int64)  # a component lies in exactly one group
    rank_of_comp[chan_c] = np.arange(len(chan_c)) - np.repeat(g_lo, g_hi - g_lo)
    channel = rank_of_comp[comp]
    reduced_chan = result.comp_reduced[chan_c]
    any_reduced = np.add.reduceat(reduced_chan.astype(np.int64), g_lo) > 0

    # one member per segment, in group order, then slot order
    seg_order = np.lexsort((seg_slot, seg_group))
    seg_bounds = np.flatnonzero(np.diff(seg_group[seg_order])) + 1
    group_segs = zip(np.concatenate([[0], seg_bounds]).tolist(),
                     np.concatenate([seg_bounds, [nseg]]).tolist())
    index_of = atoms - table.slot_start[slot_of]
    seg_len = seg_hi - seg_lo
    # a segment holding its whole axis (the common case) shares one tuple per length
    whole = ((index_of[seg_lo] == 0) & (index_of[seg_hi - 1] == seg_len - 1)).tolist()
    param_of: dict[str, str] = {}
    for sid in seg_slot.tolist():
        name = table.slot_value[sid]
        if name not in param_of:
            param_of[name] = str(graph.value(name).param)
    axis_of, value_of = table.slot_axis, table.slot_value
    lo_hi = list(zip(seg_lo[seg_order].tolist(), seg_hi[seg_order].tolist()))
    members = [Slice(param_of[value_of[sid]], axis_of[sid],
                     _whole(hi - lo) if whole[k] else tuple(index_of[lo:hi].tolist()))
               for k, sid, (lo, hi) in zip(seg_order.tolist(), seg_slot[seg_order].tolist(), lo_hi)]
    channels = [channel[lo:hi] for lo, hi in lo_hi]
    groups: list[Group] = []
    for (lo_c, hi_c, g, reduced), (lo_s, hi_s) in zip(
            zip(g_lo.tolist(), g_hi.tolist(), chan_g[g_lo].tolist(), any_reduced.tolist()), group_segs):
        seg_comps = chan_c[lo_c:hi_c]
        notes: tuple[str, ...] = ()
        if reduced:
            red = reduced_chan[lo_c:hi_c]
            notes = tuple(dict.fromkeys(result.reasons[r] for r in result.comp_reduce_reason[seg_comps[red]]))
        groups.append(Group(int(renumber[g]), tuple(members[lo_s:hi_s]), hi_c - lo_c, not reduced, notes,
                            tuple(channels[lo_s:hi_s]), seg_comps))
    groups.sort(key=lambda gr: gr.id)
    return groups, pinned_params


@functools.lru_cache(maxsize=256)
def _whole(n: int) -> tuple[int, ...]:
    """0..n-1 (the indices of a whole axis): one shared tuple per length."""
    return tuple(range(n))


def _pinned_params(graph: Graph, result: CouplingResult, atoms: np.ndarray, slot_of: np.ndarray,
                   comp: np.ndarray) -> list[PinnedParam]:
    """Axes 0/1 of parameters that are entirely pinned, with the reason of their first atom."""
    out: list[PinnedParam] = []
    pinned = result.comp_pinned[comp]
    table = result.atoms
    starts = np.concatenate([[0], np.flatnonzero(np.diff(slot_of)) + 1])  # slot_of runs slot by slot
    # slots whose every atom is pinned: no unpinned atom in the run
    whole = np.add.reduceat((~pinned).astype(np.int64), starts) == 0 if len(starts) else np.zeros(0, bool)
    for lo in starts[whole].tolist():
        sid = int(slot_of[lo])
        axis = table.slot_axis[sid]
        if axis > 1 or table.slot_size[sid] <= 1:
            continue
        rid = int(result.comp_pin_reason[comp[lo]])
        value = graph.value(table.slot_value[int(sid)])
        out.append(PinnedParam(str(value.param), axis, result.reasons[rid] if rid >= 0 else "pinned"))
    return out


def removal_keep_mask(result: CouplingResult, groups: Sequence[Group],
                      removed: Mapping[int, Sequence[int]]) -> np.ndarray:
    """Boolean keep mask over atoms for removing `removed[group id]` channels of each group."""
    by_id = {g.id: g for g in groups}
    drop_comp = np.zeros(result.num_components, dtype=bool)
    for gid, chans in removed.items():
        if len(chans):
            drop_comp[by_id[gid].components[np.asarray(list(chans), dtype=np.int64)]] = True
    return ~drop_comp[result.labels]
