"""Introspection for pass and rule authors: stable analysis text (golden files), explain, pictures."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import prunec
from prunec import cli
from prunec.ir.draw import draw, to_dot
from tests.pipeline.test_custom_ops import FusedNet, X, fused_rule

FACTORY = "tests.pipeline.test_introspection:ResidualConcat"


class ResidualConcat(nn.Module):
    """A residual add, a concat and a depthwise conv (a group of 12), then a plain pair (a group of 6)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.body = nn.Conv2d(8, 8, 3, padding=1)
        self.side = nn.Conv2d(8, 4, 1)
        self.dw = nn.Conv2d(12, 12, 3, padding=1, groups=12)
        self.head = nn.Conv2d(12, 6, 1)
        self.out = nn.Conv2d(6, 5, 1)

    def forward(self, x):
        y = torch.relu(self.bn(self.stem(x)))
        y = y + self.body(y)
        y = torch.cat([y, self.side(y)], dim=1)
        return self.out(torch.relu(self.head(torch.relu(self.dw(y)))))


@pytest.fixture(scope="module")
def fused_pinned() -> prunec.Analysis:
    """FusedNet analysed without a rule for its custom op."""
    torch.manual_seed(0)
    return prunec.analyze(FusedNet().eval(), X)


@pytest.fixture(scope="module")
def residual() -> prunec.Analysis:
    """ResidualConcat analysed."""
    torch.manual_seed(0)
    return prunec.analyze(ResidualConcat().eval(), X)


def test_analysis_text_golden_with_pins(fused_pinned: prunec.Analysis, golden) -> None:
    """print(analysis) of a model with an unknown op: groups, members, pinned nodes and axes with reasons."""
    golden("fused_net_pinned.analysis.txt", str(fused_pinned) + "\n")


def test_analysis_text_golden_with_user_rule(golden) -> None:
    """With the user rule, the custom op's weight, scale and shift join stem's and mid's groups."""
    prunec.op_rule("prunec_test::fused_conv_bn_relu")(fused_rule)
    text = str(prunec.analyze(FusedNet().eval(), X))
    assert text.startswith("3 groups, 72 prunable channels")
    golden("fused_net_rule.analysis.txt", text + "\n")


def test_analysis_text_golden_residual_concat(residual: prunec.Analysis, golden) -> None:
    """Residual add, concat offsets and a depthwise conv print as stable groups."""
    golden("residual_concat.analysis.txt", str(residual) + "\n")


def test_dot_golden(residual: prunec.Analysis, golden) -> None:
    """The Graphviz picture of groups is stable text."""
    golden("residual_concat.dot", to_dot(residual))


def test_explain_param_in_a_group_lists_rules(residual: prunec.Analysis) -> None:
    """explain(param) names the group and every coupling that built it, with node, op and rule."""
    text = residual.explain("stem.weight")
    assert text.startswith("parameter 'stem.weight' [8, 3, 3, 3] (param, IR value 'p_stem_weight')")
    assert "  axis 0 (size 8): group 0 'stem.weight[0]' (12 channels)" in text
    assert "cat [aten::cat] conv2d_2[1] <-> cat[1] via offset(8)  -- rule cat (" in text
    assert ("conv2d [aten::conv2d] conv2d[1] <-> stem.weight[0]  -- rule conv "
            "(built-in prunec/rules/torch_ops.py:") in text
    assert "[aten::add] " in text and "rule broadcasting_rule (built-in prunec/rules/torch_ops.py:" in text
    assert "[aten::cat] " in text  # the concat put the residual stream into the head's input columns
    assert "  axis 1 (size 3): pinned (all channels): model input" in text


def test_explain_pinned_param_gives_reason_and_path(fused_pinned: prunec.Analysis) -> None:
    """explain(param) of a pinned axis says which pin and through which couplings it arrived."""
    text = fused_pinned.explain("mid.weight")
    assert ("  axis 1 (size 32): pinned (all channels): no op rule for 'prunec_test::fused_conv_bn_relu' "
            "(at 'fused_conv_bn_relu')") in text
    assert "    the pin reaches it from fused_conv_bn_relu[1] through:" in text
    assert "conv2d_1 [aten::conv2d] fused_conv_bn_relu[1] <-> mid.weight[1]" in text
    assert "  axis 0 (size 24): group 0 'mid.weight[0]' (24 channels)" in text


def test_explain_node(fused_pinned: prunec.Analysis) -> None:
    """explain(node) gives the op, its rule (or none), pin reason, ports and the fate of its axes."""
    text = fused_pinned.explain("fused_conv_bn_relu")
    lines = text.splitlines()
    assert lines[:4] == ["node 'fused_conv_bn_relu' [prunec_test::fused_conv_bn_relu]", "  no rule",
                         "  pinned: no op rule for 'prunec_test::fused_conv_bn_relu'",
                         "  input x: relu [2, 16, 8, 8]"]
    assert "  input weight: p_weight [32, 16, 3, 3]" in lines and "  couplings (0):" in lines
    assert any(ln.startswith("    p_scale[0] (size 32): pinned (all channels): no op rule") for ln in lines)


def test_explain_user_rule_source_and_a_value() -> None:
    """A node answered by a user rule names the rule's own file:line; model inputs explain as values."""
    prunec.op_rule("prunec_test::fused_conv_bn_relu")(fused_rule)
    analysis = prunec.analyze(FusedNet().eval(), X)
    text = analysis.explain("fused_conv_bn_relu")
    assert "\n  rule fused_rule (" in text and "test_custom_ops.py:" in text
    assert "    relu[1] <-> weight[1]\n" in text and "    fused_conv_bn_relu[1] <-> scale[0]\n" in text
    value = analysis.explain("x")
    assert value.startswith("value 'x' [2, 3, 8, 8] (input)\n  read by conv2d [aten::conv2d] as input")
    assert "  axis 1 (size 3): pinned (all channels): model input" in value


def test_explain_unknown_name_suggests(residual: prunec.Analysis) -> None:
    """An unknown name is a PruneError listing the closest parameters and nodes."""
    with pytest.raises(prunec.PruneError, match=r"'stem.wieght' is not a parameter, node or value of the "
                                                r"analysed model; did you mean 'stem.weight'"):
        residual.explain("stem.wieght")


def test_draw_writes_a_picture(residual: prunec.Analysis, tmp_path: Path) -> None:
    """draw() renders a PNG with matplotlib (no Graphviz needed) and returns the figure."""
    fig = draw(residual, str(tmp_path / "g.png"))
    data = (tmp_path / "g.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert len(fig.axes[0].patches) == len(residual.graph)  # one box per op


def test_pictures_refuse_large_graphs(residual: prunec.Analysis) -> None:
    """Pictures are for small models: a graph over the limit is refused with what to use instead."""
    with pytest.raises(prunec.PruneError, match=r"the graph has \d+ ops; pictures are for small models "
                                                r"\(at most 3\)"):
        to_dot(residual, max_ops=3)


def test_cli_inspect_explain_and_dot(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`prunec inspect MODEL --explain NAME --dot PATH` prints the explanation and writes the picture."""
    dot = tmp_path / "g.dot"
    assert cli.main(["inspect", FACTORY, "--input-shape", "1,3,8,8",
                     "--explain", "side.weight", "--dot", str(dot)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("parameter 'side.weight' [4, 8, 1, 1]")
    assert dot.read_text().startswith("digraph prunec {")


def test_cli_inspect_unknown_name_exit_code(capsys: pytest.CaptureFixture) -> None:
    """An unknown --explain name exits with the bad-input code and the suggestion on stderr."""
    assert cli.main(["inspect", FACTORY, "--input-shape", "1,3,8,8",
                     "--explain", "sied.weight"]) == 2
    assert "did you mean 'side.weight'" in capsys.readouterr().err


def test_golden_check_fails_on_a_difference(golden, request: pytest.FixtureRequest) -> None:
    """The golden comparison fails, with a diff, when the text changes."""
    if request.config.getoption("--update-golden"):
        pytest.skip("comparing is off while golden files are being rewritten")
    with pytest.raises(pytest.fail.Exception,
                       match=r"output differs from .*residual_concat.dot \(refresh with pytest "
                             r"--update-golden if intended\):\n--- golden"):
        golden("residual_concat.dot", "digraph other {}\n")


@pytest.mark.parametrize(("argv", "message"), [
    (["inspect", "no_such_zoo_model"], r"unknown model 'no_such_zoo_model': give a zoo name \(.*\) or "
                                       r"'package.module:factory' with --input-shape 1,3,32,32"),
    (["inspect", FACTORY], r"model 'tests.pipeline.test_introspection:ResidualConcat' needs --input-shape"),
    (["inspect", "tests.nowhere:Model", "--input-shape", "1,3,8,8"],
     r"cannot load 'tests.nowhere:Model' with input shape '1,3,8,8': No module named 'tests.nowhere'"),
    (["inspect", FACTORY, "--input-shape", "1,x"], r"cannot load .* with input shape '1,x'"),
])
def test_cli_inspect_bad_model_arguments(argv: list[str], message: str,
                                         capsys: pytest.CaptureFixture) -> None:
    """Bad model arguments exit with code 2 and say what to pass instead."""
    import re

    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
