"""Dead channels: computed but never read; removing only them leaves the model's function unchanged."""

from __future__ import annotations

import copy

import pytest
import torch
from prunec.zoo import ZOO
from torch import nn

import prunec
from prunec.analysis.liveness import dead_channels
from prunec.rewrite import rewrite_module


class Tail(nn.Module):
    """conv -> BN -> relu -> keep the first 5 of 8 channels -> conv: channels 5..7 are never read."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.bn, self.b = nn.Conv2d(3, 8, 1), nn.BatchNorm2d(8), nn.Conv2d(5, 4, 1)

    def forward(self, x):
        return self.b(torch.relu(self.bn(self.a(x)))[:, :5])


class GhostTail(nn.Module):
    """GhostNet's cat(primary, cheap)[:, :oup], with a dense or a depthwise cheap op.

    With a dense cheap op the cheap tail is dead; with a depthwise one (GhostNet's own) each tail
    channel is tied to a live primary channel.
    """

    def __init__(self, depthwise: bool) -> None:
        super().__init__()
        self.primary = nn.Conv2d(3, 4, 1)
        self.cheap = nn.Conv2d(4, 4, 3, padding=1, groups=4 if depthwise else 1)
        self.out = nn.Conv2d(6, 2, 1)

    def forward(self, x):
        p = self.primary(x)
        return self.out(torch.cat([p, self.cheap(p)], 1)[:, :6])


def _remove_only(model: nn.Module, analysis: prunec.Analysis, dead: dict) -> nn.Module:
    masks = {gid: tuple(int(c) for c in chans) for gid, chans in dead.items()}
    pruned = copy.deepcopy(model)
    rewrite_module(pruned, analysis, analysis.keep_mask(masks))
    return pruned


X = torch.randn(2, 3, 6, 6)


def test_slice_tail_is_dead_and_free_to_remove():
    """The dropped channels are found, and removing only them leaves the original outputs exact."""
    model = Tail().eval()
    analysis = prunec.analyze(model, X)
    dead = dead_channels(analysis)
    (gid,) = dead
    g = analysis.group(gid)
    assert g.channel_members(dead[gid]) == (
        prunec.Slice("a.weight", 0, (5, 6, 7)),
        prunec.Slice("a.bias", 0, (5, 6, 7)),
        prunec.Slice("bn.weight", 0, (5, 6, 7)),
        prunec.Slice("bn.bias", 0, (5, 6, 7)),
        prunec.Slice("bn.running_mean", 0, (5, 6, 7)),
        prunec.Slice("bn.running_var", 0, (5, 6, 7)),
    )
    pruned = _remove_only(model, analysis, dead)
    assert pruned.a.out_channels == 5
    with torch.no_grad():
        assert torch.equal(pruned(X), model(X))


@pytest.mark.parametrize("depthwise,count", [(False, 2), (True, 0)], ids=["dense_cheap", "depthwise_cheap"])
def test_ghost_tail(depthwise, count):
    """A dense cheap op leaves its last two filters dead; a depthwise one ties them to live channels."""
    model = GhostTail(depthwise).eval()
    analysis = prunec.analyze(model, X)
    dead = dead_channels(analysis)
    assert sum(len(c) for c in dead.values()) == count
    with torch.no_grad():
        assert torch.equal(_remove_only(model, analysis, dead)(X), model(X))


@pytest.mark.parametrize(
    "name", ["resnet_basic", "densenet", "inception", "shufflenet_v2", "unet", "char_gpt"]
)
def test_zoo_models_have_no_dead_channels(name):
    """Every channel of these models reaches the output (none is reported dead)."""
    entry = ZOO[name]
    assert dead_channels(prunec.analyze(entry.build().eval(), entry.example_inputs())) == {}
