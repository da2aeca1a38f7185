"""ModelIndex reads a model's tree once and agrees with torch's own walks."""

from __future__ import annotations

import pytest
import torch
from prunec.zoo import ZOO
from torch import nn

from prunec.frontends.model_index import ModelIndex


class Tricky(nn.Module):
    """A module used twice, a tied weight, a non-persistent buffer and a None parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Linear(4, 4)
        self.a = nn.Sequential(self.shared, nn.BatchNorm1d(4))
        self.b = nn.Sequential(self.shared, nn.Linear(4, 4, bias=False))
        self.head = nn.Linear(4, 4)
        self.head.weight = self.b[1].weight
        self.register_buffer("scratch", torch.zeros(3), persistent=False)
        self.register_parameter("unused", None)


def _ids(pairs):
    return [(name, id(t)) for name, t in pairs]


def test_index_agrees_with_torch_walks():
    model = Tricky()
    index = ModelIndex.of(model)
    assert [(n, id(m)) for n, m in index.modules] == [(n, id(m)) for n, m in model.named_modules()]
    assert _ids(index.parameters) == _ids(model.named_parameters())
    assert _ids(index.buffers) == _ids(model.named_buffers())
    assert _ids(index.state) == _ids(model.state_dict(keep_vars=True).items())
    assert len(index.state) == 14 and len(index.parameters) == 6  # shared and tied entries once


def test_a_state_dict_hook_is_honoured():
    """A module that customizes its state_dict: the index asks state_dict itself."""
    model = Tricky()
    model.head.register_state_dict_pre_hook(lambda *a, **k: None)
    model.a[1]._register_state_dict_hook(lambda module, sd, prefix, local: sd.pop(prefix + "running_var"))
    index = ModelIndex.of(model)
    assert _ids(index.state) == _ids(model.state_dict(keep_vars=True).items())
    assert "a.1.running_var" not in dict(index.state)


class OwnWalk(nn.Module):
    """A module whose named_modules() hides a child: the index must ask it, not walk _modules."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = nn.Linear(2, 2)
        self.hidden = nn.Linear(2, 2)

    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        yield prefix, self
        yield from self.seen.named_modules(memo, prefix + ("." if prefix else "") + "seen", remove_duplicate)


def test_a_class_with_its_own_named_modules_is_asked():
    model = nn.Sequential(nn.Linear(2, 2), OwnWalk())
    index = ModelIndex.of(model)
    assert [n for n, _ in index.modules] == [n for n, _ in model.named_modules()] == ["", "0", "1", "1.seen"]


@pytest.mark.parametrize("name", sorted(ZOO))
def test_index_agrees_with_torch_walks_on_every_zoo_model(name):
    model = ZOO[name].build()
    index = ModelIndex.of(model)
    assert [(n, id(m)) for n, m in index.modules] == [(n, id(m)) for n, m in model.named_modules()]
    assert _ids(index.parameters) == _ids(model.named_parameters())
    assert _ids(index.buffers) == _ids(model.named_buffers())
    assert _ids(index.state) == _ids(model.state_dict(keep_vars=True).items())
