"""Connected components, numbered as scipy numbers them: by each component's smallest node.

Most of what the coupling analysis joins are whole slots, identity to identity (a ReLU's input and
output channels, a conv's filters and its BN's affine). `atom_components` merges those at the slot
level first and solves the rest on one node per class of merged atoms, which is a fraction of the
atom count. Graphs below twenty thousand nodes are solved with numpy (tiny ones in Python): scipy's
checks and conversions cost more than the search itself there.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from prunec.analysis.atoms import expand_ranges

SMALL = 64
"""Graphs with at most this many nodes are solved with a Python union-find."""
MEDIUM = 20_000
"""Graphs with at most this many nodes are solved with array operations (hooking each root under the
smallest root it touches, then pointer jumping); larger ones by scipy."""


def components(n: int, a: np.ndarray, b: np.ndarray) -> tuple[int, np.ndarray]:
    """Components of the undirected graph on nodes 0..n-1 with edges a[i] - b[i]: (count, label of
    each node), labels numbered in the order of each component's smallest node."""
    if n <= SMALL:
        return _small_components(n, a, b)
    if n <= MEDIUM:
        found = _array_components(n, np.asarray(a, np.int64), np.asarray(b, np.int64))
        if found is not None:
            return found
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    count, labels = connected_components(graph, directed=False)
    return int(count), labels.astype(np.int64)


def _array_components(n: int, a: np.ndarray, b: np.ndarray,
                      rounds: int = 64) -> tuple[int, np.ndarray] | None:
    """Min-root hooking with pointer jumping; None if it has not converged after `rounds` rounds."""
    parent = np.arange(n, dtype=np.int64)
    for _ in range(rounds):
        pa, pb = parent[a], parent[b]
        apart = pa != pb
        if not apart.any():
            break
        pa, pb = pa[apart], pb[apart]
        np.minimum.at(parent, np.maximum(pa, pb), np.minimum(pa, pb))
        while True:  # every node straight under its root (roots only ever get smaller)
            up = parent[parent]
            if np.array_equal(up, parent):
                break
            parent = up
    else:
        return None
    # each root is its component's smallest node
    is_root = parent == np.arange(n, dtype=np.int64)
    rank = np.cumsum(is_root) - 1
    return int(is_root.sum()), rank[parent]


def _small_components(n: int, a: np.ndarray, b: np.ndarray) -> tuple[int, np.ndarray]:
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for x, y in zip(np.asarray(a).tolist(), np.asarray(b).tolist()):
        rx, ry = find(x), find(y)
        if rx < ry:  # the root stays the smallest node of its component
            parent[ry] = rx
        elif ry < rx:
            parent[rx] = ry
    roots = np.asarray([find(x) for x in range(n)], dtype=np.int64)
    is_root = roots == np.arange(n, dtype=np.int64)
    rank = np.cumsum(is_root) - 1
    return int(is_root.sum()), rank[roots]


def atom_components(slot_start: np.ndarray, slot_size: np.ndarray, total: int, ident: np.ndarray,
                    a: np.ndarray, b: np.ndarray) -> tuple[int, np.ndarray]:
    """Components of atoms joined by identity ranges `ident` (rows: slot a, slot b, count: atom
    start[a]+k ~ start[b]+k for k < count) and by atom pairs a[i] ~ b[i]; numbered by smallest atom."""
    sa, sb, count = ident.T if len(ident) else (np.zeros(0, np.int64),) * 3
    whole = (count == slot_size[sa]) & (count == slot_size[sb])
    nslots = len(slot_size)
    # classes of slots joined whole: each becomes one run of nodes of the reduced graph
    _, cls = components(nslots, sa[whole], sb[whole])
    ncls = int(cls.max()) + 1 if nslots else 0
    first_slot = np.full(ncls, nslots, dtype=np.int64)
    np.minimum.at(first_slot, cls, np.arange(nslots, dtype=np.int64))
    cls_size = slot_size[first_slot]
    cls_start = np.cumsum(cls_size) - cls_size
    shift = cls_start[cls] - slot_start  # reduced node of atom t in slot s: t + shift[s]
    reduced_total = int(cls_size.sum())

    # what was not joined whole: partial identity ranges and atom pairs, on reduced nodes
    part = ~whole
    ea, eb = [np.asarray(a, np.int64)], [np.asarray(b, np.int64)]
    if part.any():
        ea.append(expand_ranges(slot_start[sa[part]], count[part]))
        eb.append(expand_ranges(slot_start[sb[part]], count[part]))
    ra, rb = np.concatenate(ea), np.concatenate(eb)
    if len(ra):
        ra = ra + shift[np.searchsorted(slot_start, ra, side="right") - 1]
        rb = rb + shift[np.searchsorted(slot_start, rb, side="right") - 1]
        _, reduced = components(reduced_total, ra, rb)
    else:
        reduced = np.arange(reduced_total, dtype=np.int64)

    # number components by their smallest atom: a reduced node's smallest atom lies in the first
    # slot of its class
    smallest_atom = expand_ranges(slot_start[first_slot], cls_size)
    ncomp = int(reduced.max()) + 1 if reduced_total else 0
    first_atom = np.full(ncomp, total, dtype=np.int64)
    np.minimum.at(first_atom, reduced, smallest_atom)
    rank = np.empty(ncomp, dtype=np.int64)
    rank[np.argsort(first_atom, kind="stable")] = np.arange(ncomp, dtype=np.int64)
    labels_reduced = rank[reduced]
    node_of_atom = np.arange(total, dtype=np.int64) + np.repeat(shift, slot_size)
    return ncomp, labels_reduced[node_of_atom]
