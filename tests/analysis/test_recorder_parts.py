"""Small parts of the recorder that have fast paths: tree flattening and forward's input names."""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn
from torch.utils import _pytree as pytree

from prunec.frontends.torch_record import _input_names, flatten
from prunec.inputs import ExampleInputs

t1, t2 = torch.zeros(2), torch.ones(3)


@pytest.mark.parametrize("tree", [
    t1,
    ((t1,), {}),
    ((t1, t2), {}),
    ((), {}),
    ((t1, 3), {}),  # a plain value among the arguments
    ((t1,), {"mask": t2}),
    (([t1, t2],), {}),
    ((nn.Parameter(t1),), {}),  # a subclass is not a plain tensor
    [t1, t2],
    {"a": t1},
    (t1, t2),
])
def test_flatten_equals_pytree(tree):
    leaves, spec = flatten(tree)
    want_leaves, want_spec = pytree.tree_flatten(tree)
    assert [id(x) for x in leaves] == [id(x) for x in want_leaves]
    assert spec == want_spec
    assert pytree.tree_unflatten(leaves, spec).__class__ is tree.__class__


class Two(nn.Module):
    def forward(self, image, mask=None, *rest):
        return image


class Other(nn.Module):
    def forward(self, tokens, lengths):
        return tokens


def test_input_names_follow_each_forward():
    two, other = Two(), Other()
    args = ExampleInputs((t1, t2))
    for _ in range(2):  # the second time from the cache
        assert _input_names(two, args) == ["image", "mask"]
        assert _input_names(other, args) == ["tokens", "lengths"]
    assert _input_names(two, ExampleInputs((t1, t2, t1))) == ["image", "mask", "arg2"]
    assert _input_names(other, ExampleInputs((t1,), {"lengths": t2})) == ["tokens", "lengths"]


def test_input_names_of_a_forward_set_on_the_instance_or_unweakrefable():
    class Callable:
        __slots__ = ()

        def __call__(self, *args):
            return args[-1]

    model = Two()
    model.forward = lambda first, second: first  # no bound method: read every time
    assert _input_names(model, ExampleInputs((t1, t2))) == ["first", "second"]
    model.forward = lambda other: other
    assert _input_names(model, ExampleInputs((t1,))) == ["other"]
    odd = Two()
    odd.forward = types.MethodType(Callable(), odd)  # a method whose function takes no weak reference
    for _ in range(2):
        assert _input_names(odd, ExampleInputs((t1, t2))) == ["arg0", "arg1"]
