"""Unsupported ops, ignore=, targets, options and a broken rewrite on the ONNX path: each a clear outcome."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest
from onnx import helper

import prunec
from prunec.errors import InputError, PruneError, TargetError, UnsupportedOpError, VerificationError
from prunec.rewrite import to_onnx
from prunec.scoring import Criterion, Need
from tests.onnx.helpers import make_model, rand
from tests.onnx.test_onnx_ops import case_slice, conv


def lrn_model():
    """conv1 -> relu -> conv2 -> LRN (no rule: mixes neighbouring channels) -> conv3."""
    n1, i1 = conv("conv1", "x", 3, 8, 3)
    n2, i2 = conv("conv2", "r", 8, 8)
    n3, i3 = conv("conv3", "l", 8, 4)
    nodes = [*n1, helper.make_node("Relu", ["conv1"], ["r"]), *n2,
             helper.make_node("LRN", ["conv2"], ["l"], size=3, name="lrn"), *n3]
    return make_model(nodes, {"x": (2, 3, 6, 6)}, ["conv3"], {**i1, **i2, **i3})


def test_op_without_rule_is_pinned_with_its_reason():
    """LRN has no rule: its channels stay, the report says why, and the rest still prunes."""
    result = prunec.prune(lrn_model(), ratio=0.5)
    assert [(p.node, p.reason) for p in result.report.pinned] == [("lrn", "no op rule for 'onnx::LRN'")]
    assert [r.name for r in result.removed] == ["conv1.w[0]"]
    assert result.verification.passed


def test_op_without_rule_is_an_error_when_strict():
    """strict=True turns the pin into UnsupportedOpError naming node, op and the fix."""
    with pytest.raises(UnsupportedOpError, match=r"1 node\(s\) cannot be analysed: lrn \[onnx::LRN\] "
                                                 r"\(module 'lrn'\): no op rule for 'onnx::LRN'\. Register a rule "
                                                 r"with @prunec\.op_rule\('onnx::LRN'\)"):
        prunec.prune(lrn_model(), ratio=0.5, strict=True)


def test_ignore_keeps_a_nodes_output_channels():
    """ignore= a node name (or glob) keeps its output channels; other groups still prune."""
    result = prunec.prune(lrn_model(), ratio=0.5, ignore=["conv1"])
    assert result.removed == ()
    assert prunec.analyze(lrn_model(), ignore=["conv*"]).groups == ()


def test_ignore_of_unknown_node_suggests_names():
    """A name that matches nothing is an InputError with close matches."""
    with pytest.raises(InputError, match=r"ignore= names 'conv_1', which matches no node or initializer of the "
                                         r"model; did you mean 'conv1'"):
        prunec.analyze(lrn_model(), ignore=["conv_1"])


def test_impossible_and_unsupported_targets():
    """A MACs share the model cannot reach and a latency target are TargetErrors."""
    with pytest.raises(TargetError, match=r"macs=0\.01 cannot be reached: removing 99% of every prunable group "
                                          r"still keeps .* The closest achievable target is macs="):
        prunec.prune(lrn_model(), target="macs=0.01")
    with pytest.raises(TargetError, match=r"latency targets are not supported for ONNX models"):
        prunec.prune(lrn_model(), target="latency=0.5")


def test_torch_only_options_are_rejected():
    """Options that only make sense for torch modules are an InputError on an ONNX model."""
    with pytest.raises(InputError, match=r"inplace, pipeline apply to torch models only"):
        prunec.prune(lrn_model(), ratio=0.5, inplace=True, pipeline="l2")
    with pytest.raises(InputError, match=r"^tracer apply to torch models only"):
        prunec.prune(lrn_model(), ratio=0.5, tracer="export")
    with pytest.raises(InputError, match=r"^tracer apply to torch models only"):
        prunec.analyze(lrn_model(), tracer="record")


@dataclass(frozen=True)
class _NeedsGradients(Criterion):
    needs: ClassVar = frozenset({Need.GRADIENTS})
    name: ClassVar[str] = "needs-gradients"

    def score_slice(self, data):
        return data.weight.abs().sum(1)


def test_gradient_criterion_is_rejected_for_onnx():
    """ONNX files have no gradients: a criterion that needs them is a PruneError."""
    with pytest.raises(PruneError, match=r"criterion 'needs-gradients' needs gradients, which an ONNX file "
                                         r"cannot provide; use a weight-only criterion such as 'l2' or 'l1'"):
        prunec.prune(lrn_model(), ratio=0.5, criterion=_NeedsGradients())


def test_verification_catches_a_broken_rewrite(monkeypatch):
    """With the Slice resizer disabled the bounds go stale; onnxruntime verification refuses the model."""
    monkeypatch.setitem(to_onnx.RESIZERS, "onnx::Slice", lambda ctx: to_onnx.Edit())
    with pytest.raises(VerificationError, match=r"the pruned ONNX model does not match its reference: "
                                                r"verification FAILED"):
        prunec.prune(case_slice(), ratio=0.5)


def test_onnx_example_inputs_must_be_a_dict():
    """Positional example inputs are ambiguous for ONNX: an InputError says what to pass."""
    with pytest.raises(InputError, match=r"example inputs of an ONNX model must be None or a dict"):
        prunec.prune(lrn_model(), (rand(2, 3, 6, 6),), ratio=0.5)
