"""Budget: a MACs / params / channel-fraction target becomes the set of channels to zero."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from prunec.passes.optimizers import Budget, ChannelUnits
from prunec.zoo import ZOO

import prunec


@pytest.fixture(scope="module")
def resnet():
    model = ZOO["digits_resnet"].build()
    analysis = prunec.analyze(model, torch.randn(4, 1, 16, 16))
    return model, analysis, ChannelUnits(model, analysis)


@pytest.mark.parametrize("allocation", ["uniform", "global"])
@pytest.mark.parametrize("value", [0.5, 0.2, 0.1])
def test_macs_target_lands_within_two_points(resnet, allocation, value):
    """macs=50%/20%/10% on the digits ResNet selects channels whose compiled model keeps value +- 2 points."""
    _, analysis, units = resnet
    budget = Budget(analysis, units, f"macs={value}", allocation=allocation)
    chosen = budget.select(units.norms().double().numpy(), budget.goal)
    kept = budget.kept(chosen)
    assert value - 0.02 <= kept <= value + 1e-9
    sizes = {g.id: g.channel_count for g in units.groups}
    for gid, chans in units.masks(chosen).items():
        assert len(chans) < sizes[gid]  # no layer emptied


def test_compiled_model_has_the_predicted_macs(resnet):
    """Zeroing the selected channels and compiling gives exactly the MACs share the budget predicted."""
    _, analysis, _ = resnet
    model = ZOO["digits_resnet"].build()
    units = ChannelUnits(model, analysis)
    budget = Budget(analysis, units, "macs=0.3")
    chosen = budget.select(units.norms().double().numpy(), budget.goal)
    units.zero_(torch.as_tensor(chosen))
    result, diff = prunec.compile_zero_groups(model, torch.randn(4, 1, 16, 16))
    assert result.report.macs_ratio == pytest.approx(budget.kept(chosen), abs=1e-12)
    assert 0.28 <= result.report.macs_ratio <= 0.30
    assert diff <= 1e-4


def test_params_and_ratio_targets(resnet):
    """params=0.5 keeps <= half the parameters (within 2 points); ratio=0.25 zeroes a quarter of channels."""
    _, analysis, units = resnet
    params = Budget(analysis, units, "params=0.5")
    chosen = params.select(units.norms().double().numpy(), params.goal)
    assert 0.48 <= params.kept(chosen) <= 0.5
    ratio = Budget(analysis, units, "ratio=0.25")
    chosen = ratio.select(units.norms().double().numpy(), ratio.goal)
    assert int(chosen.sum()) == int(np.ceil(0.25 * units.count))


def test_progressive_schedule_is_linear_in_removed_share(resnet):
    """Four periods towards macs=0.5 aim at 0.875, 0.75, 0.625, 0.5."""
    _, analysis, units = resnet
    assert Budget(analysis, units, "macs=0.5").schedule(4) == pytest.approx([0.875, 0.75, 0.625, 0.5])


def test_fixed_units_stay_chosen(resnet):
    """Selection only adds to the units already fixed."""
    _, analysis, units = resnet
    budget = Budget(analysis, units, "macs=0.5")
    fixed = np.zeros(units.count, dtype=bool)
    fixed[[0, 20, 40]] = True
    chosen = budget.select(units.norms().double().numpy(), 0.7, fixed)
    assert chosen[fixed].all()
    assert budget.kept(chosen) <= 0.7


def test_unreachable_target_names_the_closest(resnet):
    """A share below what zeroing everything removable reaches raises TargetError with the floor."""
    _, analysis, units = resnet
    with pytest.raises(prunec.TargetError, match=r"cannot be reached.*closest reachable target is macs=0\.0"):
        Budget(analysis, units, "macs=0.001")


def test_latency_target_is_rejected(resnet):
    """Optimizers take macs/params/ratio targets; latency is refused with the alternatives."""
    _, analysis, units = resnet
    with pytest.raises(prunec.TargetError, match="take a macs, params or ratio target, not 'latency'"):
        Budget(analysis, units, "latency=0.5")


def test_bad_allocation_is_rejected(resnet):
    """An unknown allocation is named with the valid ones."""
    _, analysis, units = resnet
    with pytest.raises(prunec.TargetError, match="allocation='even'; use one of uniform, global"):
        Budget(analysis, units, "macs=0.5", allocation="even")
