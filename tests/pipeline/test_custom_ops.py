"""Custom ops (torch.library ops, autograd.Functions) are pinned until a user rule describes them.

With a ~10-line rule prunec prunes through them and the contract holds.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 - torch's convention

import prunec
from prunec.rules import OpView, RuleResult, couple
from tests.helpers import assert_prunes_equivalently


@torch.library.custom_op("prunec_test::fused_conv_bn_relu", mutates_args=())
def fused_conv_bn_relu(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor,
                       shift: torch.Tensor) -> torch.Tensor:
    """relu(conv3x3(x, weight) * scale + shift)."""
    y = F.conv2d(x, weight, padding=1)
    return F.relu(y * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1))


@fused_conv_bn_relu.register_fake
def _(x, weight, scale, shift):
    return x.new_empty(x.shape[0], weight.shape[0], x.shape[2], x.shape[3])


@torch.library.custom_op("prunec_test::roll_channels", mutates_args=())
def roll_channels(x: torch.Tensor) -> torch.Tensor:
    """y[:, c] = x[:, c - 1]: mixes channel positions, so no rule may claim y[c] <-> x[c]."""
    return torch.roll(x, 1, dims=1)


@roll_channels.register_fake
def _(x):
    return torch.empty_like(x)


def fused_rule(node: OpView) -> RuleResult:
    """The user rule of the tutorial: out[:, c] = relu(sum_i x[:, i] w[c, i] scale[c] + shift[c])."""
    x, weight, y = node.input("x"), node.input("weight"), node.output(0)
    return [
        couple(x.axis(0), y.axis(0)),
        couple(x.channel, weight.axis(1)),
        couple(y.channel, weight.axis(0)),
        couple(y.channel, node.input("scale").axis(0)),
        couple(y.channel, node.input("shift").axis(0)),
    ]


class FusedNet(nn.Module):
    """stem conv -> fused custom op -> mid conv -> head conv."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.weight = nn.Parameter(torch.randn(32, 16, 3, 3) * 0.2)
        self.scale = nn.Parameter(torch.rand(32) + 0.5)
        self.shift = nn.Parameter(torch.randn(32) * 0.1)
        self.mid = nn.Conv2d(32, 24, 1)
        self.head = nn.Conv2d(24, 10, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = torch.ops.prunec_test.fused_conv_bn_relu(x, self.weight, self.scale, self.shift)
        return self.head(torch.relu(self.mid(x)))


class ChannelGate(torch.autograd.Function):
    """y = x * sigmoid(gate[c]), straight-through backward."""

    @staticmethod
    def forward(ctx, x, gate, temperature):
        return x * torch.sigmoid(gate / temperature).view(1, -1, 1, 1)

    @staticmethod
    def backward(ctx, grad):
        return grad, None, None


class GatedNet(nn.Module):
    """conv -> relu -> ChannelGate (an autograd.Function) -> conv."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 12, 3, padding=1)
        self.gate = nn.Parameter(torch.randn(12))
        self.b = nn.Conv2d(12, 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(ChannelGate.apply(torch.relu(self.a(x)), self.gate, 2.0))


def gate_rule(node: OpView) -> RuleResult:
    """Every axis passes through; channel c is scaled by sigmoid(gate[c] / temperature)."""
    x, y = node.input("x"), node.output(0)
    facts = [couple(x.axis(k), y.axis(k)) for k in range(x.rank)]
    return [*facts, couple(y.channel, node.input("gate").axis(0))]


X = torch.randn(2, 3, 8, 8)


def test_library_op_without_rule_is_pinned_and_pruned_around() -> None:
    """No rule: the op's node is pinned with its reason in the report; mid's channels still go."""
    torch.manual_seed(0)
    result = assert_prunes_equivalently(FusedNet().eval(), X, ratio=0.5)
    assert [(p.node, p.op, p.reason) for p in result.report.pinned] == [
        ("fused_conv_bn_relu", "prunec_test::fused_conv_bn_relu",
         "no op rule for 'prunec_test::fused_conv_bn_relu'")]
    assert "fused_conv_bn_relu [prunec_test::fused_conv_bn_relu]: no op rule" in str(result.report)
    assert result.report.channels_removed == 12 and result.model.mid.weight.shape == (12, 32, 1, 1)
    assert result.model.weight.shape == (32, 16, 3, 3) and result.model.stem.weight.shape == (16, 3, 3, 3)


def test_library_op_strict_raises_with_the_rule_to_write() -> None:
    """strict=True turns the pin into UnsupportedOpError that names the decorator to write."""
    with pytest.raises(prunec.UnsupportedOpError,
                       match=r"fused_conv_bn_relu \[prunec_test::fused_conv_bn_relu\].*no op rule.*"
                             r"Register a rule with @prunec.op_rule\('prunec_test::fused_conv_bn_relu'\)"):
        prunec.analyze(FusedNet().eval(), X, strict=True)


@pytest.mark.parametrize("output", ["module", "graph_module"])
def test_library_op_with_user_rule_prunes_through(output: str) -> None:
    """With the rule, stem, the fused op and mid are all halved, and the contract holds."""
    prunec.op_rule("prunec_test::fused_conv_bn_relu")(fused_rule)
    torch.manual_seed(0)
    model = FusedNet().eval()
    result = assert_prunes_equivalently(model, X, ratio=0.5, output=output, expect_output=output)
    assert result.report.pinned == ()
    assert result.report.channels_removed == 8 + 16 + 12
    state = result.model.state_dict()
    assert state["weight"].shape == (16, 8, 3, 3) and state["scale"].shape == (16,)
    assert state["stem.weight"].shape == (8, 3, 3, 3) and state["mid.weight"].shape == (12, 16, 1, 1)


def test_rule_registered_with_the_op_object() -> None:
    """@op_rule(<the custom op>) works the same as the string key."""
    prunec.op_rule(fused_conv_bn_relu)(fused_rule)
    assert len(prunec.analyze(FusedNet().eval(), X).groups) == 3


def test_wrong_user_rule_is_caught_by_verification() -> None:
    """A rule that claims channel c stays channel c through a channel roll fails verification."""
    @prunec.op_rule("prunec_test::roll_channels")
    def wrong(node: OpView) -> RuleResult:
        x, y = node.input(0), node.output(0)
        return [couple(x.axis(k), y.axis(k)) for k in range(x.rank)]

    class Rolled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 4, 1)

        def forward(self, x):
            return self.b(torch.ops.prunec_test.roll_channels(self.a(x)))

    with pytest.raises(prunec.VerificationError):
        prunec.prune(Rolled().eval(), X, ratio=0.5, output="module")


def test_crashing_rule_pins_its_node_with_the_rule_location() -> None:
    """A rule that raises pins its node; the reason names the rule's file:line and the error."""
    @prunec.op_rule("prunec_test::fused_conv_bn_relu")
    def broken(node: OpView) -> RuleResult:
        return [couple(node.input("nonexistent").channel, node.output(0).channel)]

    analysis = prunec.analyze(FusedNet().eval(), X)
    assert len(analysis.pinned) == 1
    assert analysis.pinned[0].reason.startswith("rule from ")
    reason = analysis.pinned[0].reason
    assert "test_custom_ops.py" in reason and "KeyError: 'nonexistent'" in reason


def test_autograd_function_is_one_pinned_node_by_default() -> None:
    """An autograd.Function call is one IR node keyed autograd::<module>.<QualName>, pinned without a rule."""
    torch.manual_seed(0)
    result = assert_prunes_equivalently(GatedNet().eval(), X, ratio=0.5)
    key = f"autograd::{__name__}.ChannelGate"
    assert [(p.node, p.op, p.reason) for p in result.report.pinned] == [
        ("ChannelGate_0", key, f"no op rule for '{key}'")]
    assert result.report.channels_removed == 0 and result.model.a.weight.shape == (12, 3, 3, 3)
    node = result.analysis.graph.op("ChannelGate_0")
    ports = [p for p, _ in result.analysis.graph.inputs(node)]
    assert ports == ["x", "gate"] and node.attrs == {"temperature": 2.0}


@pytest.mark.parametrize("output", ["module", "graph_module"])
def test_autograd_function_with_user_rule_prunes_through(output: str) -> None:
    """A rule registered with the Function class prunes a, gate and b's inputs together."""
    prunec.op_rule(ChannelGate)(gate_rule)
    torch.manual_seed(0)
    result = assert_prunes_equivalently(GatedNet().eval(), X, ratio=0.5, output=output, expect_output=output)
    assert result.report.pinned == () and result.report.channels_removed == 6
    state = result.model.state_dict()
    assert state["gate"].shape == (6,) and state["a.weight"].shape == (6, 3, 3, 3)
    assert state["b.weight"].shape == (5, 6, 1, 1)


def test_function_apply_is_restored_even_when_tracing_fails() -> None:
    """Prunec patches Function.apply only while exporting, and puts it back on failure too."""
    original = torch.autograd.Function.__dict__["apply"]

    class Bad(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x  # data-dependent control flow: export fails

    with pytest.raises(prunec.TraceError):
        prunec.analyze(Bad(), X)
    assert torch.autograd.Function.__dict__["apply"] is original
    prunec.analyze(GatedNet().eval(), X)
    assert torch.autograd.Function.__dict__["apply"] is original


class SplitHalves(torch.autograd.Function):
    """Two outputs: the first and second half of the channels, the second scaled by a captured tensor."""

    @staticmethod
    def forward(ctx, x):
        half = x.shape[1] // 2
        return x[:, :half].clone(), x[:, half:] * 2.0

    @staticmethod
    def backward(ctx, g1, g2):
        return torch.cat([g1, g2 * 2.0], dim=1)


class Outer(torch.autograd.Function):
    """Calls another Function inside: only the outermost call becomes a node."""

    @staticmethod
    def forward(ctx, x, y):
        a, b = SplitHalves.apply(x)
        return a + b + y, y

    @staticmethod
    def backward(ctx, g, h):
        return g, g


def test_multi_output_and_nested_functions() -> None:
    """Outputs come in order, nested calls fold into the outermost node, the insides are hidden.

    A returned input comes back as autograd's view of it, so it is an output too.
    """
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 8, 1)
            self.b = nn.Conv2d(3, 4, 1)

        def forward(self, x):
            p, q = SplitHalves.apply(self.a(x))
            s, same = Outer.apply(self.a(x), self.b(x))
            return p, q, s, same

    graph = prunec.analyze(Net().eval(), X).graph
    keys = sorted(op.op for op in graph.ops() if op.op.startswith("autograd::"))
    assert keys == [f"autograd::{__name__}.Outer", f"autograd::{__name__}.SplitHalves"]
    split = next(op for op in graph.ops() if op.op.endswith("SplitHalves"))
    assert [v.shape for v in graph.outputs(split)] == [(2, 4, 8, 8), (2, 4, 8, 8)]
    outer = next(op for op in graph.ops() if op.op.endswith("Outer"))
    assert [p for p, _ in graph.inputs(outer)] == ["x", "y"]
    assert [v.shape for v in graph.outputs(outer)] == [(2, 4, 8, 8), (2, 4, 8, 8)]
    assert not any(op.op == "aten::slice" for op in graph.ops())  # the Functions' insides are hidden


def test_function_reading_a_captured_tensor_gets_a_captured_port() -> None:
    """A tensor the forward reads without receiving it becomes input 'captured0'."""
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 6, 1)
            self.bias = nn.Parameter(torch.randn(6))

        def forward(self, x):
            bias = self.bias

            class AddCaptured(torch.autograd.Function):
                @staticmethod
                def forward(ctx, y):
                    return y + bias.view(1, -1, 1, 1)

                @staticmethod
                def backward(ctx, g):
                    return g

            return AddCaptured.apply(self.a(x))

    graph = prunec.analyze(Net().eval(), X).graph
    node = next(op for op in graph.ops() if op.op.startswith("autograd::"))
    assert [(p, v.param) for p, v in graph.inputs(node)] == [("y", None), ("captured0", "bias")]


class ScaledByParam(torch.autograd.Function):
    """A Function in the setup_context style: forward has no ctx argument."""

    @staticmethod
    def forward(x, s):
        return x * s.view(1, -1, 1, 1)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, g):
        return g, None


def test_setup_context_style_function_names_its_ports() -> None:
    """Ports are forward's parameter names whether or not forward takes ctx."""
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 6, 1)
            self.s = nn.Parameter(torch.rand(6))

        def forward(self, x):
            return ScaledByParam.apply(self.a(x), self.s)

    graph = prunec.analyze(Net().eval(), X).graph
    node = next(op for op in graph.ops() if op.op.startswith("autograd::"))
    assert node.op == f"autograd::{__name__}.ScaledByParam"
    assert [(p, v.param) for p, v in graph.inputs(node)] == [("x", None), ("s", "s")]
