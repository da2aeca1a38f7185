"""Dead channels: channels a model computes but never reads (removing them changes nothing at all).

A GhostNet module computes `cat([primary, cheap])[:, :oup]`: the channels past `oup` are computed,
normalised and activated, then dropped. They form groups' channels like any other and, scored by
magnitude, look important. This module finds them, so a selection can remove them first for free.

A component (one zero-invariant channel) is live when it is pinned (model outputs, undescribed
ops), mixed by a reducing op, or read by some op into a live component. An op reads a component C
into its outputs when one of its input atoms in C takes part in the op's couplings (so the op uses
that entry) while C has no atom among the op's outputs: the entry is mixed into other channels (a
conv's input column, a contraction). Entries that only flow along (an activation, a norm, a concat:
the same component on both sides) are live exactly when their component is; entries an op does not
couple at all (the tail a slice drops) are not read there. Liveness is propagated from the outputs
backwards until nothing changes.
"""

from __future__ import annotations

import numpy as np

from prunec.analysis.coupling import coupling_atoms
from prunec.analysis.result import Analysis


def live_components(analysis: Analysis, max_passes: int = 8) -> np.ndarray:
    """Boolean per atom component: does it (possibly) influence a model output?"""
    res, graph = analysis.coupling, analysis.graph
    table, labels = res.atoms, res.labels
    live = res.comp_pinned | res.comp_reduced
    reads: list[tuple[np.ndarray, np.ndarray]] = []  # per op: (components it mixes in, its output components)
    for op in graph.ops():
        in_slots = {s for _, v in graph.inputs(op) for s in table.slots_of(v)}
        out_slots = [s for v in graph.outputs(op) for s in table.slots_of(v)]
        if not out_slots:
            continue
        out_comps = np.unique(np.concatenate([labels[table.atoms(s)] for s in out_slots]))
        used = [a for c in res.node_couplings.get(op.name, ())
                for a, slot in zip(coupling_atoms(table, c), (c.a, c.b)) if table.slot_id(slot) in in_slots]
        if not used:
            continue
        mixed = np.setdiff1d(labels[np.concatenate(used)], out_comps)
        if len(mixed):
            reads.append((mixed, out_comps))
    for _ in range(max_passes):
        changed = False
        for mixed, out_comps in reversed(reads):
            if live[out_comps].any() and not live[mixed].all():
                live[mixed] = True
                changed = True
        if not changed:
            break
    return live


def dead_channels(analysis: Analysis) -> dict[int, np.ndarray]:
    """Group id -> channels of that group that no model output depends on (only groups with some)."""
    live = live_components(analysis)
    out: dict[int, np.ndarray] = {}
    for g in analysis.groups:
        dead = np.flatnonzero(~live[g.components])
        if len(dead):
            out[g.id] = dead
    return out
