"""Channel units: reading and writing exactly the member slices of chosen channels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from prunec.passes.optimizers import ChannelUnits, exact_zero_channels

import prunec
from tests.optimizers.nets import image_batch, tiny_conv


@pytest.fixture(scope="module")
def conv_setup():
    model = tiny_conv()
    analysis = prunec.analyze(model, image_batch(0, 2)[0])
    return model, analysis


def _expected_zeroed(model, analysis, masks):
    """The contract's zeroing: index_fill every parameter member slice of the chosen channels."""
    state = {n: p.detach().clone() for n, p in model.named_parameters()}
    for gid, chans in masks.items():
        for s in analysis.group(gid).channel_members(chans):
            if s.param in state:
                state[s.param].index_fill_(s.dim, torch.as_tensor(s.indices), 0)
    return state


def test_shared_parameter_has_slices_in_two_groups(conv_setup):
    """conv2.weight carries rows of one group and columns of another: both appear as unit slices."""
    model, analysis = conv_setup
    units = ChannelUnits(model, analysis)
    k = units.names.index("conv2.weight")
    dims = sorted(s.dim for s in units.slices if s.param == k)
    assert dims == [0, 1]
    assert units.count == 8 + 12


def test_zero_touches_exactly_the_member_slices(conv_setup):
    """Zeroing channel 3 of conv1's group and channel 5 of conv2's group equals index_fill of their slices."""
    model, analysis = conv_setup
    model = tiny_conv()
    units = ChannelUnits(model, analysis)
    g1 = analysis.groups[0].id
    g2 = analysis.groups[1].id
    masks = {g1: (3,), g2: (5,)}
    expected = _expected_zeroed(model, analysis, masks)
    units.zero_(torch.as_tensor(units.units_of(masks)))
    for name, p in model.named_parameters():
        assert torch.equal(p.detach(), expected[name]), name
    w = model.conv2.weight.detach()
    assert float(w[:, 3].abs().max()) == 0.0 and float(w[5].abs().max()) == 0.0
    assert float(w[4, 2].abs().max()) > 0  # an element of neither slice is untouched


def test_exact_zeros_and_masks_round_trip(conv_setup):
    """exact_zeros reports exactly the zeroed units; masks() and units_of() invert each other."""
    _, analysis = conv_setup
    model = tiny_conv()
    units = ChannelUnits(model, analysis)
    chosen = np.zeros(units.count, dtype=bool)
    chosen[[1, 6, 9, 19]] = True
    units.zero_(torch.as_tensor(chosen))
    got = units.exact_zeros().numpy()
    assert np.array_equal(got, chosen)
    assert np.array_equal(units.units_of(units.masks(chosen)), chosen)
    assert exact_zero_channels(model, analysis) == units.masks(chosen)


def test_scale_multiplies_only_chosen_units(conv_setup):
    """scale_ by 0.5 on one unit halves its slices and leaves every other element bit-identical."""
    _, analysis = conv_setup
    model = tiny_conv()
    units = ChannelUnits(model, analysis)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    factor = torch.ones(units.count)
    factor[2] = 0.5
    units.scale_(factor)
    assert torch.equal(model.conv1.weight[2], before["conv1.weight"][2] * 0.5)
    assert torch.equal(model.conv1.weight[3], before["conv1.weight"][3])
    assert torch.equal(model.conv2.weight[:, 2], before["conv2.weight"][:, 2] * 0.5)
    assert torch.equal(model.fc.weight, before["fc.weight"])


def test_reduce_sums_match_manual_norms(conv_setup):
    """norms() of a conv1-group unit equals the norm over its conv1 row, BN entries and conv2 column."""
    _, analysis = conv_setup
    model = tiny_conv()
    units = ChannelUnits(model, analysis)
    c = 4
    manual = (model.conv1.weight[c].pow(2).sum() + model.bn1.weight[c] ** 2 + model.bn1.bias[c] ** 2
              + model.conv2.weight[:, c].pow(2).sum()).sqrt()
    assert float(units.norms()[c]) == pytest.approx(float(manual), rel=1e-6)


def test_model_without_prunable_group_is_rejected():
    """A model whose only channels are pinned has no unit: a clear InputError."""
    model = torch.nn.Linear(4, 3)
    analysis = prunec.analyze(model, torch.randn(2, 4))
    with pytest.raises(prunec.InputError, match="no group a structured-sparse optimizer can drive to zero"):
        ChannelUnits(model, analysis)


def test_unknown_group_in_masks_is_rejected(conv_setup):
    """units_of names the group that the optimizer does not know."""
    model, analysis = conv_setup
    units = ChannelUnits(model, analysis)
    with pytest.raises(prunec.InputError, match="group 99 is not one of the optimizer's prunable groups"):
        units.units_of({99: (0,)})
