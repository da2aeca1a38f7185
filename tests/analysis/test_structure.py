"""Exact group structures on small models: which parameter slices go together, channel by channel."""

from __future__ import annotations

import torch
from torch import nn

import prunec

X = torch.randn(2, 3, 8, 8)


def group_with(analysis: prunec.Analysis, param: str, dim: int) -> prunec.Group:
    """The group holding (param, dim)."""
    return next(g for g in analysis.groups if any(m.param == param and m.dim == dim for m in g.members))


def channel(group: prunec.Group, c: int) -> dict[tuple[str, int], tuple[int, ...]]:
    """(param, dim) -> indices of one channel of the group."""
    return {(s.param, s.dim): s.indices for s in group.channel_members([c])}


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(8, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)

    def forward(self, x):
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


class TinyResNet(nn.Module):
    """Stem, one basic residual block, global pool, classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.bn = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.block = _Block()
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(self.block(torch.relu(self.bn(self.stem(x)))).mean((2, 3)))


RESNET_GROUPS = """\
2 groups, 12 prunable channels
group 0 'stem.weight[0]': 8 channels
  stem.weight[dim 0: 0-7]
  bn.weight[dim 0: 0-7]
  bn.bias[dim 0: 0-7]
  block.conv1.weight[dim 1: 0-7]
  block.conv2.weight[dim 0: 0-7]
  block.bn2.weight[dim 0: 0-7]
  block.bn2.bias[dim 0: 0-7]
  fc.weight[dim 1: 0-7]
  bn.running_mean[dim 0: 0-7]
  bn.running_var[dim 0: 0-7]
  block.bn2.running_mean[dim 0: 0-7]
  block.bn2.running_var[dim 0: 0-7]
group 1 'block.conv1.weight[0]': 4 channels
  block.conv1.weight[dim 0: 0-3]
  block.bn1.weight[dim 0: 0-3]
  block.bn1.bias[dim 0: 0-3]
  block.conv2.weight[dim 1: 0-3]
  block.bn1.running_mean[dim 0: 0-3]
  block.bn1.running_var[dim 0: 0-3]
unprunable parameter axes:
  stem.weight[1]: model input
  fc.weight[0]: model output
  fc.bias[0]: model output"""


def test_residual_block_groups_exactly():
    """The residual stream is one group, the bottleneck another; the printout is exactly this."""
    assert str(prunec.analyze(TinyResNet().eval(), X)) == RESNET_GROUPS


def test_grouped_conv_prunes_the_same_positions_in_every_group():
    """groups=2: channel j of the input group structure is input j of both groups (and its filters)."""
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 3, groups=2), nn.Conv2d(8, 5, 1)).eval()
    analysis = prunec.analyze(model, X)
    g_in = group_with(analysis, "1.weight", 1)
    assert g_in.channel_count == 4
    assert channel(g_in, 1) == {("0.weight", 0): (1, 5), ("0.bias", 0): (1, 5), ("1.weight", 1): (1,)}
    g_out = group_with(analysis, "1.weight", 0)
    assert g_out.channel_count == 4
    assert channel(g_out, 2) == {("1.weight", 0): (2, 6), ("1.bias", 0): (2, 6), ("2.weight", 1): (2, 6)}


def test_grouped_conv_falls_back_to_whole_groups_when_positions_are_pinned():
    """When the per-group weight axis cannot shrink (the input is the model input), whole groups go."""
    model = nn.Sequential(nn.Conv2d(4, 8, 3, groups=2), nn.Conv2d(8, 5, 1)).eval()
    analysis = prunec.analyze(model, torch.randn(2, 4, 8, 8))
    g = group_with(analysis, "0.weight", 0)
    assert g.channel_count == 4
    assert channel(g, 0) == {("0.weight", 0): (0, 4), ("0.bias", 0): (0, 4), ("1.weight", 1): (0, 4)}


def test_depthwise_conv_is_one_unit_per_channel():
    """A depthwise conv's filter c goes with input channel c (and its producer's filter c)."""
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 3, groups=8), nn.Conv2d(8, 5, 1)).eval()
    g = group_with(prunec.analyze(model, X), "1.weight", 0)
    assert g.channel_count == 8
    assert channel(g, 3) == {
        ("0.weight", 0): (3,),
        ("0.bias", 0): (3,),
        ("1.weight", 0): (3,),
        ("1.bias", 0): (3,),
        ("2.weight", 1): (3,),
    }


def test_group_norm_couples_whole_groups():
    """GroupNorm(4, 16): a channel of the group is a whole norm group of 4 conv filters."""
    model = nn.Sequential(nn.Conv2d(3, 16, 1), nn.GroupNorm(4, 16), nn.Conv2d(16, 5, 1)).eval()
    g = group_with(prunec.analyze(model, X), "1.weight", 0)
    assert (g.channel_count, g.zero_invariant) == (4, True)
    assert channel(g, 2) == dict.fromkeys(
        [("0.weight", 0), ("0.bias", 0), ("1.weight", 0), ("1.bias", 0), ("2.weight", 1)], (8, 9, 10, 11)
    )


def test_channel_shuffle_keeps_position_across_groups():
    """ChannelShuffle(2): x channels j and 4+j become y channels 2j and 2j+1, and go together."""
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ChannelShuffle(2), nn.Conv2d(8, 5, 1)).eval()
    g = group_with(prunec.analyze(model, X), "0.weight", 0)
    assert g.channel_count == 4
    assert channel(g, 3) == {("0.weight", 0): (3, 7), ("0.bias", 0): (3, 7), ("2.weight", 1): (6, 7)}


def test_concat_offsets_parts_into_the_consumer():
    """cat([a(4), b(2)]): b's filter 1 is the consumer's column 5, in one 6-channel group."""

    class Cat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.c = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 2, 1), nn.Conv2d(6, 5, 1)

        def forward(self, x):
            return self.c(torch.cat([self.a(x), self.b(x)], 1))

    g = group_with(prunec.analyze(Cat().eval(), X), "c.weight", 1)
    assert g.channel_count == 6
    assert channel(g, 5) == {("b.weight", 0): (1,), ("b.bias", 0): (1,), ("c.weight", 1): (5,)}


class _Heads(nn.Module):
    """(B, T, 8) -> (B, T, 2, 4), scaled per head or per head dimension, then merged back."""

    def __init__(self, per_head: bool) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(6, 8), nn.Linear(8, 5)
        self.scale = nn.Parameter(torch.rand(2, 1) + 0.5 if per_head else torch.rand(4) + 0.5)

    def forward(self, x):
        h = self.a(x)
        return self.b((h.view(*h.shape[:-1], 2, 4) * self.scale).flatten(-2))


def test_reshape_channels_follow_heads_first():
    """An 8 -> 2x4 split carries channels on the outer factor: one channel = one head of 4."""
    g = group_with(prunec.analyze(_Heads(True).eval(), torch.randn(2, 3, 6)), "a.weight", 0)
    assert g.channel_count == 2
    assert channel(g, 1) == {
        ("a.weight", 0): (4, 5, 6, 7),
        ("a.bias", 0): (4, 5, 6, 7),
        ("scale", 0): (1,),
        ("b.weight", 1): (4, 5, 6, 7),
    }


def test_reshape_keeps_heads_when_a_parameter_scales_the_inner_factor():
    """Channels stay on the heads while any head can go; a per-dimension parameter is then kept."""
    analysis = prunec.analyze(_Heads(False).eval(), torch.randn(2, 3, 6))
    g = group_with(analysis, "a.weight", 0)
    assert g.channel_count == 2 and ("scale", 0) not in {(m.param, m.dim) for m in g.members}
    assert "scale" in {p.param for p in analysis.pinned_params}


class _QKV(nn.Module):
    """timm's fused projection: (B, T, 2*4) -> (B, T, 2, 4) -> unbind the 2 -> q * k -> linear."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(6, 8), nn.Linear(4, 5)

    def forward(self, x):
        h = self.a(x)
        q, k = h.view(*h.shape[:-1], 2, 4).unbind(-2)
        return self.b(q * k)


def test_reshape_moves_to_the_inner_factor_when_the_outer_one_is_pinned():
    """With the outer factor unbound (pinned), channels ride the inner one: q's and k's dim d go."""
    g = group_with(prunec.analyze(_QKV().eval(), torch.randn(2, 3, 6)), "a.weight", 0)
    assert g.channel_count == 4
    assert channel(g, 1) == {("a.weight", 0): (1, 5), ("a.bias", 0): (1, 5), ("b.weight", 1): (1,)}


def test_zero_invariance_flags_name_the_mixing_op():
    """BN groups are zero-invariant; LayerNorm and a mean over channels are not, and say why."""

    class Mixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.bn, self.b = nn.Conv2d(3, 8, 1), nn.BatchNorm2d(8), nn.Conv2d(8, 6, 1)
            self.ln, self.c = nn.LayerNorm(6), nn.Conv2d(6, 5, 1)

        def forward(self, x):
            h = self.bn(self.a(x))
            h = self.b(h * torch.sigmoid(h.mean(1, keepdim=True)))
            return self.c(self.ln(h.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))

    analysis = prunec.analyze(Mixed().eval(), X)
    g_a, g_b = group_with(analysis, "a.weight", 0), group_with(analysis, "b.weight", 0)
    assert not g_a.zero_invariant and not g_b.zero_invariant
    assert g_a.notes == ("'aten::mean' reduces over axis 1 (at 'mean')",)
    assert g_b.notes == ("'aten::layer_norm' normalizes over this axis (at 'layer_norm')",)
    plain = group_with(
        prunec.analyze(nn.Sequential(nn.Conv2d(3, 8, 1), nn.BatchNorm2d(8), nn.Conv2d(8, 2, 1)).eval(), X),
        "0.weight",
        0,
    )
    assert plain.zero_invariant and plain.notes == ()


def test_networkx_view_has_every_op_value_and_port():
    """Graph.nx_graph(): one node per op and value, an edge per input (keyed by port) and output."""
    import prunec

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 1)).eval()
    graph = prunec.analyze(model, torch.randn(1, 3, 8, 8)).graph
    g = graph.nx_graph()
    assert g.number_of_nodes() == len(graph) + graph.num_values()
    edges = sum(len(graph.inputs(op)) + len(graph.outputs(op)) for op in graph.ops())
    assert g.number_of_edges() == edges == 10
    conv = next(op for op in graph.ops() if op.op == "aten::conv2d")
    ports = sorted(k for _, _, k in g.in_edges(("op", conv.name), keys=True))
    assert ports == ["bias", "input", "weight"]


def test_lint_finds_an_op_reading_a_value_before_its_producer():
    """Graph.lint(): ops added in order pass; an op added before the producer of its input, or one
    reading its own output, is named."""
    import pytest

    from prunec.errors import IRError
    from prunec.ir.graph import Graph, OpNode, Value

    def graph(order: list[str]) -> Graph:
        g = Graph()
        for name in ("x", "a", "b"):
            g.add_value(Value(name, (2,), "torch.float32"))
        ops = {"f": (OpNode("f", "relu"), [("in", "x")], ["a"]),
               "g": (OpNode("g", "relu"), [("in", "a")], ["b"]),
               "h": (OpNode("h", "relu"), [("in", "b")], ["b2"])}
        g.add_value(Value("b2", (2,), "torch.float32"))
        for name in order:
            g.add_op(*ops[name])
        return g

    graph(["f", "g", "h"]).lint()
    with pytest.raises(IRError, match="op 'g' reads 'a' on port 'in' before it is defined"):
        graph(["g", "f", "h"]).lint()
    own = Graph()
    own.add_value(Value("y", (2,), "torch.float32"))
    own.add_op(OpNode("loop", "relu"), [("in", "y")], ["y"])
    with pytest.raises(IRError, match="op 'loop' reads 'y'"):
        own.lint()
