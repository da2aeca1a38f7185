"""Group kinds from the graph, selecting kinds, and the honest treatment of norms that mix channels."""

import pytest
import torch
from prunec.zoo import ZOO

import prunec
from prunec.inputs import ExampleInputs
from tests.helpers import outputs_close


@pytest.fixture(scope="module")
def gpt():
    """The zoo char_gpt and its example tokens (built once for the module)."""
    entry = ZOO["char_gpt"]
    return entry.build(), entry.example_inputs()


def test_kinds_are_classified_from_the_graph(gpt):
    """char_gpt: one hidden group (norms, residuals, tied embedding), per layer a heads and an MLP group."""
    model, x = gpt
    kinds = [g.kind for g in prunec.analyze(model, x).groups]
    assert kinds == ["hidden", "heads", "mlp", "heads", "mlp"]


def test_kinds_select_what_is_pruned(gpt):
    """kinds=('mlp',) removes MLP channels only: heads and hidden keep every channel."""
    model, x = gpt
    result = prunec.prune(model, x, ratio=0.5, kinds=("mlp",))
    assert {g.kind for g in result.removed} == {"mlp"}
    assert result.model.blocks[0].attn.heads == 4
    assert result.model.blocks[0].fc.out_features == 128
    assert result.model.tok.weight.shape == (96, 64)


def test_unknown_kind_is_an_input_error(gpt):
    """A misspelt kind names the valid ones."""
    model, x = gpt
    with pytest.raises(prunec.InputError,
                       match=r"kinds=\('head',\): each kind must be one of heads, head_dim"):
        prunec.prune(model, x, ratio=0.5, kinds=("head",))


def test_zeroing_differs_from_removing_under_layernorm(gpt):
    """A hidden channel feeds LayerNorm statistics: the zeroed original is NOT the pruned model there."""
    model, x = gpt
    result = prunec.prune(model, x, ratio=0.25, kinds="hidden")
    assert [g.zero_invariant for g in result.removed] == [False]
    assert "normalizes over this axis" in result.removed[0].notes[0]
    with torch.no_grad():
        pruned, zeroed = result.model(x), prunec.zeroed_copy(model, result.removed)(x)
    assert outputs_close(pruned, zeroed) > 1e-2  # removal really differs from zeroing


def test_removal_reference_matches_the_pruned_model(gpt):
    """Prunec verifies non-zero-invariant groups against removal computed in closed form, and it holds."""
    from prunec.reference import traced_reference

    model, x = gpt
    result = prunec.prune(model, x, ratio=0.25, kinds="hidden")
    assert result.verification.passed and "channel-mixing" in result.verification.reference
    keep = result.analysis.keep_mask({g.group_id: g.channels for g in result.removed})
    reference, _ = traced_reference(result.analysis, keep, result.removed)
    with torch.no_grad():
        for inp in (ExampleInputs.from_user(x), ExampleInputs.from_user(x).randomized(5)):
            assert outputs_close(inp.call(result.model), inp.call(reference)) < 1e-5


def test_zero_invariant_only_keeps_the_literal_contract(gpt):
    """zero_invariant_only=True leaves hidden out; then the zeroed original equals the pruned model."""
    model, x = gpt
    result = prunec.prune(model, x, ratio=0.5, zero_invariant_only=True)
    assert result.removed and all(g.zero_invariant for g in result.removed)
    assert {g.kind for g in result.removed} == {"heads", "mlp"}
    with torch.no_grad():
        assert outputs_close(result.model(x), prunec.zeroed_copy(model, result.removed)(x)) < 1e-5


def test_group_selection_is_refused_for_onnx_models(tmp_path):
    """kinds= has no meaning for an ONNX file yet: an InputError, not a silently ignored option."""
    pytest.importorskip("onnx")
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)).eval()
    path = tmp_path / "mlp.onnx"
    torch.onnx.export(model, (torch.randn(1, 4),), str(path), dynamo=False)
    with pytest.raises(prunec.InputError, match=r"kinds= apply to PyTorch models only"):
        prunec.prune(str(path), ratio=0.5, kinds="mlp")
