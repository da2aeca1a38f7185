"""A node whose rule answer no other node shares states its facts one at a time; the solve must be
exactly the one of the array path every larger batch takes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from prunec.zoo import ZOO

import prunec
from prunec.analysis import coupling


def _solved(model, inputs):
    a = prunec.analyze(model, inputs)
    c = a.coupling
    return (c.labels, c.comp_pinned, [c.reasons[r] if r >= 0 else None for r in c.comp_pin_reason],
            c.comp_pin_atom, c.comp_reduced, [c.reasons[r] if r >= 0 else None for r in c.comp_reduce_reason],
            [str(p) for p in c.pinned], [(g.members, g.notes, g.kind) for g in a.groups])


def _assert_same(x, y):
    for u, v in zip(x, y):
        if isinstance(u, np.ndarray):
            np.testing.assert_array_equal(u, v)
        else:
            assert u == v


def _models():
    yield from ((name, ZOO[name].build().eval(), ZOO[name].example_inputs()) for name in sorted(ZOO))
    tv = pytest.importorskip("torchvision")
    for name in ("mobilenet_v3_small", "efficientnet_b0"):  # layers that almost all differ
        torch.manual_seed(0)
        yield name, tv.models.get_model(name, weights=None).eval(), torch.randn(1, 3, 64, 64)


@pytest.mark.parametrize("case", list(_models()), ids=lambda case: case[0])
def test_lone_nodes_solve_as_batches_do(case, monkeypatch):
    _, model, inputs = case
    lone = _solved(model, inputs)
    monkeypatch.setattr(coupling, "LONE_NODES_ONE_AT_A_TIME", False)
    _assert_same(lone, _solved(model, inputs))
