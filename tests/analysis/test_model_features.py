"""Model features the analysis must handle.

Parameters used directly in forward, shared modules, in-place ops, functional calls, tied weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import prunec
from tests.helpers import assert_prunes_equivalently


def members_of(analysis: prunec.Analysis, param: str, dim: int) -> set[tuple[str, int]]:
    """(param, dim) of every member of the group holding (param, dim)."""
    for g in analysis.groups:
        if any(m.param == param and m.dim == dim for m in g.members):
            return {(m.param, m.dim) for m in g.members}
    raise AssertionError(f"{param}[{dim}] is in no group:\n{analysis}")


class TinyViT(nn.Module):
    """Patch embedding, class token, position embedding, one MLP block with layer scale, a head."""

    def __init__(self, dim: int = 8, tokens: int = 4) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 4, stride=4)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, tokens + 1, dim))
        self.fc1, self.fc2 = nn.Linear(dim, 12), nn.Linear(12, dim)
        self.gamma = nn.Parameter(torch.rand(dim) + 0.5)
        self.head = nn.Linear(dim, 3)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls_token.expand(t.shape[0], -1, -1), t], dim=1) + self.pos_embed
        t = t + self.gamma * self.fc2(F.gelu(self.fc1(t)))
        return self.head(t[:, 0])


def test_class_token_position_embedding_and_layer_scale_join_the_residual_group():
    """Parameters used directly are members of the residual stream's group on their channel axis."""
    x = torch.randn(2, 3, 8, 8)
    analysis = prunec.analyze(TinyViT().eval(), x)
    assert members_of(analysis, "patch.weight", 0) == {
        ("patch.weight", 0),
        ("patch.bias", 0),
        ("cls_token", 2),
        ("pos_embed", 2),
        ("fc1.weight", 1),
        ("fc2.weight", 0),
        ("fc2.bias", 0),
        ("gamma", 0),
        ("head.weight", 1),
    }
    assert members_of(analysis, "fc1.weight", 0) == {("fc1.weight", 0), ("fc1.bias", 0), ("fc2.weight", 1)}
    result = assert_prunes_equivalently(TinyViT(), x, ratio=0.5, expect_output="module")
    assert tuple(result.model.cls_token.shape) == (1, 1, 4) and tuple(result.model.pos_embed.shape) == (
        1,
        5,
        4,
    )
    assert tuple(result.model.gamma.shape) == (4,)


class SharedConv(nn.Module):
    """One conv called twice in a row, and one linear shared by two branches."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 1)
        self.shared = nn.Conv2d(8, 8, 3, padding=1)
        self.proj = nn.Linear(8, 6)
        self.out = nn.Linear(6, 2)

    def forward(self, x):
        h = self.shared(torch.relu(self.shared(torch.relu(self.stem(x)))))
        a, b = h.mean((2, 3)), h.amax((2, 3))
        return self.out(torch.relu(self.proj(a)) + torch.relu(self.proj(b)))


def test_shared_module_couples_its_own_input_and_output():
    """A conv applied to its own output keeps in == out: its filters and columns are one group."""
    x = torch.randn(2, 3, 6, 6)
    analysis = prunec.analyze(SharedConv().eval(), x)
    assert members_of(analysis, "shared.weight", 0) == {
        ("stem.weight", 0),
        ("stem.bias", 0),
        ("shared.weight", 0),
        ("shared.weight", 1),
        ("shared.bias", 0),
        ("proj.weight", 1),
    }
    assert members_of(analysis, "proj.weight", 0) == {("proj.weight", 0), ("proj.bias", 0), ("out.weight", 1)}
    assert sum(1 for op in analysis.graph.ops() if op.op == "aten::conv2d" and op.origin == "shared") == 2
    result = assert_prunes_equivalently(SharedConv(), x, ratio=0.5, expect_output="module")
    assert (result.model.shared.in_channels, result.model.shared.out_channels) == (4, 4)


class InPlace(nn.Module):
    """In-place residual add, in-place ReLU and an in-place layer-scale multiply."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 4, 1)
        self.relu = nn.ReLU(inplace=True)
        self.scale = nn.Parameter(torch.rand(1, 8, 1, 1) + 0.5)

    def forward(self, x):
        h = self.relu(self.a(x))
        r = self.b(h)
        r.mul_(self.scale)
        h += r
        return self.c(self.relu(h))


def test_in_place_ops_couple_like_their_functional_forms():
    """add_/mul_/relu_ couple channels exactly as add/mul/relu do."""
    x = torch.randn(2, 3, 6, 6)
    analysis = prunec.analyze(InPlace().eval(), x)
    ops = {op.op for op in analysis.graph.ops()}
    assert {"aten::add_", "aten::mul_", "aten::relu_"} <= ops
    assert members_of(analysis, "a.weight", 0) == {
        ("a.weight", 0),
        ("a.bias", 0),
        ("b.weight", 0),
        ("b.weight", 1),
        ("b.bias", 0),
        ("scale", 1),
        ("c.weight", 1),
    }
    assert_prunes_equivalently(InPlace(), x, ratio=0.5, expect_output="module")


class Functional(nn.Module):
    """Parameters owned by the module, layers written as functional calls."""

    def __init__(self) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(8, 3, 3, 3) * 0.3)
        self.b1 = nn.Parameter(torch.randn(8))
        self.bn_w, self.bn_b = nn.Parameter(torch.rand(8) + 0.5), nn.Parameter(torch.randn(8))
        self.register_buffer("mean", torch.randn(8) * 0.1)
        self.register_buffer("var", torch.rand(8) + 0.5)
        self.w2 = nn.Parameter(torch.randn(5, 8) * 0.3)

    def forward(self, x):
        h = F.conv2d(x, self.w1, self.b1, padding=1)
        h = F.batch_norm(h, self.mean, self.var, self.bn_w, self.bn_b, training=False)
        return F.linear(F.relu(h).mean((2, 3)), self.w2)


def test_functional_calls_are_analysed_and_rewritten():
    """F.conv2d/F.batch_norm/F.linear on module parameters: one group, sliced parameters and buffers."""
    x = torch.randn(2, 3, 6, 6)
    analysis = prunec.analyze(Functional().eval(), x)
    assert members_of(analysis, "w1", 0) == {
        ("w1", 0),
        ("b1", 0),
        ("bn_w", 0),
        ("bn_b", 0),
        ("mean", 0),
        ("var", 0),
        ("w2", 1),
    }
    result = assert_prunes_equivalently(Functional(), x, ratio=0.5, expect_output="module")
    assert tuple(result.model.w1.shape) == (4, 3, 3, 3) and tuple(result.model.var.shape) == (4,)


class TiedLM(nn.Module):
    """Embedding and output projection share one weight tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 8)
        self.mlp = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 8))
        self.lm_head = nn.Linear(8, 11, bias=False)
        self.lm_head.weight = self.embed.weight

    def forward(self, ids):
        h = self.embed(ids)
        return self.lm_head(h + self.mlp(h))


def test_tied_weights_are_one_value_and_stay_tied():
    """A tied tensor appears once (canonical name, aliases), couples both uses, and stays one tensor."""
    ids = torch.randint(0, 11, (2, 5))
    analysis = prunec.analyze(TiedLM().eval(), ids)
    (tied,) = [v for v in analysis.graph.state_values() if v.aliases]
    assert (tied.param, tied.aliases) == ("embed.weight", ("lm_head.weight",))
    assert analysis.aliases("embed.weight") == ("embed.weight", "lm_head.weight")
    assert members_of(analysis, "embed.weight", 1) == {
        ("embed.weight", 1),
        ("mlp.0.weight", 1),
        ("mlp.2.weight", 0),
        ("mlp.2.bias", 0),
    }
    model = TiedLM()
    result = assert_prunes_equivalently(model, ids, ratio=0.5, expect_output="module")
    assert result.model.lm_head.weight is result.model.embed.weight
    assert tuple(result.model.embed.weight.shape) == (11, 4)
    assert prunec.count_params(result.model) == 11 * 4 + (4 * 8 + 8) + (8 * 4 + 4)  # the tied tensor once
