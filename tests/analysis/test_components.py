"""prunec.analysis.components: the same labels as scipy's connected_components on the full graph."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from prunec.analysis.components import MEDIUM, SMALL, _array_components, atom_components, components


def _scipy(n: int, a: np.ndarray, b: np.ndarray) -> tuple[int, np.ndarray]:
    count, labels = connected_components(coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(n, n)),
                                         directed=False)
    return int(count), labels.astype(np.int64)


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 8 * SMALL), st.integers(0, 12 * SMALL), st.integers(0, 2**32 - 1))
def test_components_numbers_like_scipy(n, edges, seed):
    """The union-find and the array path: same count, same label per node as scipy."""
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


@pytest.mark.parametrize("n", [MEDIUM, MEDIUM + 1])
@pytest.mark.parametrize("shape", ["random", "path"])
def test_components_on_both_sides_of_the_scipy_threshold(n, shape):
    """A random graph and a path visited in random order (the most rounds for the array path)."""
    rng = np.random.default_rng(n)
    if shape == "path":
        order = rng.permutation(n)
        a, b = order[:-1], order[1:]
    else:
        a, b = rng.integers(0, n, n), rng.integers(0, n, n)
    count, labels = components(n, a, b)
    want_count, want = _scipy(n, a, b)
    assert count == want_count
    np.testing.assert_array_equal(labels, want)


def test_array_components_gives_up_after_its_rounds():
    """A path whose nodes hook one step per round does not converge in one round: None (the caller
    then asks scipy), and the full count with enough rounds."""
    n = 200
    a, b = np.arange(n - 1, 0, -1), np.arange(n - 2, -1, -1)  # edges (i, i-1), largest first
    order = np.random.default_rng(0).permutation(n)
    a, b = order[a], order[b]
    assert _array_components(n, a, b, rounds=1) is None
    count, labels = _array_components(n, a, b)
    assert count == 1 and not labels.any()
