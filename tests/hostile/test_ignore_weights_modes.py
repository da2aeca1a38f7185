"""ignore= naming what is not there, NaN/Inf weights, training mode, and meta models."""

import pytest
import torch
from torch import nn

import prunec
from tests.hostile.common import small, snapshot


@pytest.mark.parametrize("ignore, match", [
    (["conv3"], r"ignore= names module 'conv3', which the model does not have; did you mean 'conv\d', 'conv\d'\?"),
    (["layer4.0.conv1"], r"ignore= names module 'layer4.0.conv1', which the model does not have$"),
    ([nn.Conv2d(3, 8, 1)], r"ignore= holds a Conv2d that is not a submodule of the model"),
    ([42], r"ignore= takes module names or modules, got int"),
])
def test_ignore_naming_modules_that_do_not_exist(ignore, match):
    """Each wrong ignore= entry is named (with close matches); nothing is traced or changed."""
    model, x = small()
    before = snapshot(model)
    with pytest.raises(prunec.InputError, match=match):
        prunec.prune(model, x, ratio=0.5, ignore=ignore)
    with pytest.raises(prunec.InputError, match=match):
        prunec.analyze(model, x, ignore=ignore)
    assert snapshot(model) == before


@pytest.mark.parametrize("where, value, match", [
    ("conv1.weight", float("nan"), r"'conv1.weight' holds 1 NaN and 0 infinite value\(s\)"),
    ("conv2.bias", float("inf"), r"'conv2.bias' holds 0 NaN and 1 infinite value\(s\)"),
    ("bn.running_var", float("-inf"), r"'bn.running_var' holds 0 NaN and 1 infinite value\(s\)"),
])
def test_non_finite_weights(where, value, match):
    """NaN/Inf in a parameter or buffer: InputError naming it and how to repair; model untouched."""
    model, x = small()
    with torch.no_grad():
        model.state_dict()[where].view(-1)[0] = value
    before = snapshot(model)
    with pytest.raises(prunec.InputError, match=match + r"; channel scores and verification need finite "
                                                        r"numbers. Repair them \(e.g. torch.nan_to_num_\)"):
        prunec.prune(model, x, ratio=0.5)
    assert snapshot(model) == before


def test_training_mode_with_dropout_verifies_deterministically():
    """A model in training mode (dropout p=0.5, batch norm): five prunes all verify exactly, return the
    same-class model still in training mode, and leave the original (running stats too) untouched.
    """
    model, x = small()
    model.train()
    before = snapshot(model)
    removed = set()
    for _ in range(5):
        result = prunec.prune(model, x, ratio=0.5)
        assert result.output_kind == "module", result.report.notes
        assert result.verification.max_relative_diff < 1e-6
        assert result.model.training and result.model.drop.training
        removed.add(tuple(g.channels for g in result.removed))
    assert len(removed) == 1
    assert snapshot(model) == before


def test_meta_model_asked_to_verify():
    """A meta model holds no values: prune(verify=True) says so up front; analyze still works."""
    model, x = small()
    model = model.to("meta")
    before = snapshot(model)
    with pytest.raises(prunec.InputError, match=r"SmallNet has parameters on the meta device: prune\(\) needs "
                                                r"their values to score and slice channels and to verify the "
                                                r"result. Load real weights first, or use prunec.analyze"):
        prunec.prune(model, x.to("meta"), ratio=0.5)
    with pytest.raises(prunec.InputError, match=r"on the meta device: prune\(\) needs their values to score "
                                                r"and slice channels. Load real weights"):
        prunec.prune(model, x.to("meta"), ratio=0.5, verify=False)
    assert snapshot(model) == before
    analysis = prunec.analyze(model, x.to("meta"))
    assert [g.channel_count for g in analysis.groups] == [8, 8]


def test_meta_model_cannot_be_saved(tmp_path):
    """save() refuses results whose tensors live on the meta device (no values to write)."""
    model, x = small()
    result = prunec.prune(model, x, ratio=0.5)
    result.model.to("meta")
    with pytest.raises(prunec.InputError, match=r"cannot save 'conv1.weight': it is on the meta device"):
        prunec.save(result, tmp_path / "meta")
    assert list(tmp_path.iterdir()) == []


class _MaskedSoftmax(nn.Module):
    """A persistent buffer holding -inf on purpose (a spatial attention mask), outside every group."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)
        self.head = nn.Conv2d(8, 2, 1)
        mask = torch.zeros(1, 1, 1, 4)
        mask[..., -1] = float("-inf")
        self.register_buffer("mask", mask)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x))).add(self.mask).softmax(-1)


def test_intentional_infinite_buffer_is_accepted():
    """-inf in a mask buffer that no group prunes is not an error: the model prunes and verifies."""
    model = _MaskedSoftmax().eval()
    result = prunec.prune(model, torch.randn(2, 3, 4, 4), ratio=0.5)
    assert result.verification.passed and result.model.conv.out_channels == 4
