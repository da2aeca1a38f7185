"""prunec.analysis.components: the same labels as scipy's connected_components on the full graph."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from prunec.analysis.components import SMALL, atom_components, components


def _scipy(n: int, a: np.ndarray, b: np.ndarray) -> tuple[int, np.ndarray]:
    count, labels = connected_components(coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(n, n)),
                                         directed=False)
    return int(count), labels.astype(np.int64)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 2 * SMALL), st.integers(0, 3 * SMALL), st.integers(0, 2**32 - 1))
def test_components_numbers_like_scipy(n, edges, seed):
    """Both the small-graph union-find and the scipy path: same count, same label per node."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, n, edges), rng.integers(0, n, edges)
    count, labels = components(n, a, b)
    want_count, want = _scipy(n, a, b)
    assert count == want_count
    np.testing.assert_array_equal(labels, want)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=60), st.integers(0, 80), st.integers(0, 40),
       st.integers(0, 2**32 - 1))
def test_atom_components_equal_the_expanded_graph(sizes, n_ident, n_pairs, seed):
    """Slots of random sizes joined by whole and partial identity ranges and by atom pairs: the
    slot-merging solve gives exactly the labels of the atom-level graph."""
    rng = np.random.default_rng(seed)
    size = np.asarray(sizes, dtype=np.int64)
    start = np.cumsum(size) - size
    total = int(size.sum())
    nslots = len(size)
    rows = []
    for _ in range(n_ident):
        sa, sb = rng.integers(0, nslots, 2)
        whole = min(size[sa], size[sb])
        count = whole if rng.random() < 0.7 else int(rng.integers(0, whole + 1))
        rows.append((sa, sb, count))
    ident = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
    a = rng.integers(0, max(total, 1), n_pairs) if total else np.zeros(0, np.int64)
    b = rng.integers(0, max(total, 1), n_pairs) if total else np.zeros(0, np.int64)

    ea, eb = [a], [b]
    for sa, sb, count in ident:
        ea.append(start[sa] + np.arange(count))
        eb.append(start[sb] + np.arange(count))
    want_count, want = _scipy(total, np.concatenate(ea), np.concatenate(eb))
    count, labels = atom_components(start, size, total, ident, a, b)
    assert count == want_count
    np.testing.assert_array_equal(labels, want)
