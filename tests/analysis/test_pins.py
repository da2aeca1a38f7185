"""What stays unpruned and why: unknown ops, strict mode, failing rules, ignore=, pinning rules."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import prunec
from prunec.rules import couple, op_rule
from prunec.rules.registry import RULES
from tests.analysis.custom_ops import mix, twice
from tests.helpers import assert_prunes_equivalently


class Around(nn.Module):
    """conv a -> relu -> conv b -> fn -> conv c: fn sits between b's filters and c's columns."""

    def __init__(self, fn, width: int = 6, c_in: int | None = None) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Conv2d(3, 8, 1), nn.Conv2d(8, width, 1), nn.Conv2d(c_in or width, 5, 1)
        self.fn = fn if isinstance(fn, nn.Module) else (lambda h: fn(h))  # custom ops do not deepcopy

    def forward(self, x):
        return self.c(self.fn(self.b(torch.relu(self.a(x)))))


X = torch.randn(2, 3, 8, 8)


def _params_in_groups(analysis: prunec.Analysis) -> set[tuple[str, int]]:
    return {(m.param, m.dim) for g in analysis.groups for m in g.members}


def test_unknown_op_is_pinned_and_listed():
    """An op without a rule keeps its channels and is listed in Analysis.pinned with node and op."""
    analysis = prunec.analyze(Around(twice).eval(), X)
    assert [(p.node, p.op, p.reason) for p in analysis.pinned] == [
        ("twice", "prunec_test::twice", "no op rule for 'prunec_test::twice'")
    ]
    grouped = _params_in_groups(analysis)
    assert ("b.weight", 0) not in grouped and ("c.weight", 1) not in grouped  # both sides of the op stay
    assert {("a.weight", 0), ("b.weight", 1)} <= grouped  # the rest of the model still prunes
    reasons = {(p.param, p.dim): p.reason for p in analysis.pinned_params}
    assert reasons[("b.weight", 0)] == "no op rule for 'prunec_test::twice' (at 'twice')"


def test_unknown_op_model_still_prunes_equivalently():
    """prune() removes channels elsewhere and keeps the contract around an unknown op."""
    result = assert_prunes_equivalently(Around(twice), X, ratio=0.5, expect_output="module")
    assert result.model.b.out_channels == 6 and result.model.a.out_channels == 4
    assert "prunec_test::twice" in str(result.report)


def test_strict_raises_unsupported_op_error_naming_the_node():
    """strict=True turns the pin into UnsupportedOpError with node, op and what to do."""
    with pytest.raises(
        prunec.UnsupportedOpError,
        match=(
            r"^1 node\(s\) cannot be analysed: twice \[prunec_test::twice\]: no op rule for "
            r"'prunec_test::twice'\. Register a rule with @prunec\.op_rule\('prunec_test::twice'\), or pass "
            r"strict=False to leave their channels unpruned\.$"
        ),
    ):
        prunec.analyze(Around(twice).eval(), X, strict=True)
    with pytest.raises(prunec.UnsupportedOpError, match=r"cannot be analysed: twice \[prunec_test::twice\]"):
        prunec.prune(Around(twice).eval(), X, ratio=0.5, strict=True)


def test_registering_a_rule_makes_the_op_prunable():
    """With a rule for the custom op, its channels join b's group and the contract still holds."""

    @op_rule("prunec_test::twice")
    def _twice(node):
        x, y = node.input(0), node.output(0)
        return [couple(x.axis(k), y.axis(k)) for k in range(x.rank)]

    try:
        analysis = prunec.analyze(Around(twice).eval(), X, strict=True)
        assert not analysis.pinned
        g = next(g for g in analysis.groups if any(m.param == "b.weight" and m.dim == 0 for m in g.members))
        assert {(m.param, m.dim) for m in g.members} == {("b.weight", 0), ("b.bias", 0), ("c.weight", 1)}
        result = assert_prunes_equivalently(Around(twice), X, ratio=0.5)
        assert result.model.c.in_channels == 3
    finally:
        RULES.unregister("prunec_test::twice")


def test_wrong_rule_is_caught_by_verification():
    """A rule that lies about a channel-mixing op cannot produce a silently wrong model."""

    @op_rule("prunec_test::mix")
    def _mix(node):
        x, y = node.input(0), node.output(0)
        return [couple(x.axis(k), y.axis(k)) for k in range(x.rank)]

    try:
        torch.manual_seed(0)
        with torch.no_grad():
            model = Around(mix).eval()
            model.b.weight[0] *= 0.01  # the smallest filter: channel 0, which mix() reads everywhere, goes
            model.b.bias[0] *= 0.01
        with pytest.raises(prunec.VerificationError, match=r"does not match its reference"):
            prunec.prune(model, X, ratio=0.5)
    finally:
        RULES.unregister("prunec_test::mix")


def test_failing_rule_pins_its_node_with_the_exception():
    """A rule that raises pins its node (naming the rule and the error) instead of crashing."""

    @op_rule("prunec_test::twice")
    def _broken(node):
        raise KeyError("no such port")

    try:
        analysis = prunec.analyze(Around(twice).eval(), X)
        (pin,) = analysis.pinned
        assert pin.node == "twice" and pin.op == "prunec_test::twice"
        assert "failed: KeyError: 'no such port'" in pin.reason and "test_pins.py" in pin.reason
        with pytest.raises(
            prunec.UnsupportedOpError, match=r"twice \[prunec_test::twice\]: rule from .* failed"
        ):
            prunec.analyze(Around(twice).eval(), X, strict=True)
    finally:
        RULES.unregister("prunec_test::twice")


def test_ignore_pins_outputs_but_inputs_still_shrink():
    """ignore=['b'] keeps b's filters; b's input columns still go with a's filters."""
    model = Around(nn.ReLU()).eval()
    analysis = prunec.analyze(model, X, ignore=["b"])
    grouped = _params_in_groups(analysis)
    assert ("b.weight", 0) not in grouped and ("b.weight", 1) in grouped
    reasons = {(p.param, p.dim): p.reason for p in analysis.pinned_params}
    assert reasons[("b.weight", 0)] == "output of ignored module 'b'"
    result = assert_prunes_equivalently(model, X, ratio=0.5, ignore=[model.b])
    assert (result.model.b.in_channels, result.model.b.out_channels) == (4, 6)
    assert result.model.c.in_channels == 6


def test_ignore_unknown_name_suggests_close_ones():
    """A misspelt ignore= name is an InputError that suggests the right one."""
    with pytest.raises(
        prunec.InputError,
        match=r"ignore= names module 'bb', which the model does not have; "
        r"did you mean 'b'",
    ):
        prunec.analyze(Around(nn.ReLU()).eval(), X, ignore=["bb"])
    with pytest.raises(
        prunec.InputError, match=r"ignore= holds a Conv2d that is not a submodule of the model"
    ):
        prunec.analyze(Around(nn.ReLU()).eval(), X, ignore=[nn.Conv2d(1, 1, 1)])


@pytest.mark.parametrize(
    "fn,width,c_in,reason",
    [
        (lambda h: h[:, ::2], 6, 3, "strided slice (step 2)"),
        (lambda h: h.softmax(1), 6, 6, "does not pass channels along axis 1"),
        (lambda h: h.chunk(4, 1)[0], 7, 2, "chunk with unequal parts"),
        (lambda h: torch.stack(h.unbind(1), 1), 6, 6, "unbind: one output per entry of this axis"),
        (lambda h: h.cumsum(1), 6, 6, "does not pass channels along axis 1"),
        (lambda h: h[:, torch.tensor([1, 0, 2, 3, 4, 5])], 6, 6, "does not pass channels along axis 1"),
    ],
    ids=[
        "strided_slice",
        "softmax_over_channels",
        "unequal_chunk",
        "unbind_channels",
        "cumsum_channels",
        "index_channels",
    ],
)
def test_ops_that_cannot_drop_channels_pin_them(fn, width, c_in, reason):
    """Ops whose channel axis cannot shrink keep b's filters, with the reason in pinned_params."""
    analysis = prunec.analyze(Around(fn, width, c_in).eval(), X)
    assert ("b.weight", 0) not in _params_in_groups(analysis)
    reasons = {(p.param, p.dim): p.reason for p in analysis.pinned_params}
    assert reason in reasons[("b.weight", 0)], reasons[("b.weight", 0)]
    result = assert_prunes_equivalently(Around(fn, width, c_in), X, ratio=0.5)
    assert result.model.b.out_channels == width and result.model.a.out_channels == 4


def test_select_pins_only_the_selected_channel():
    """x[:, 2] keeps channel 2; the other channels stay prunable."""
    analysis = prunec.analyze(Around(lambda h: h * h.select(1, 2).unsqueeze(1)).eval(), X)
    g = next(g for g in analysis.groups if any(m.param == "b.weight" and m.dim == 0 for m in g.members))
    member = next(m for m in g.members if m.param == "b.weight" and m.dim == 0)
    assert member.indices == (0, 1, 3, 4, 5)
