"""Iterative pruning: N steps reach the target, callbacks run between them, numbering stays original."""

import pytest
import torch
from prunec.zoo import ZOO

import prunec
from prunec.schedule import step_targets
from prunec.targets import Target
from tests.helpers import outputs_close


def test_three_steps_reach_the_target_and_the_contract_holds_end_to_end():
    """macs=0.3 in 3 steps lands within 2%; removed slices in original numbering rebuild the model."""
    entry = ZOO["resnet_basic"]
    model = entry.build()
    x = entry.example_inputs()
    result = prunec.prune(model, x, target="macs=0.3", steps=3)
    assert len(result.steps) == 3
    assert 0.294 <= result.report.macs_ratio <= 0.3
    assert [round(s.report.macs_ratio, 2) for s in result.steps] == [0.67, 0.67, 0.67]
    assert result.report.params_before == prunec.count_params(model)
    ref = prunec.zeroed_copy(model, result.removed).eval()
    with torch.no_grad():
        assert outputs_close(result.model(x), ref(x)) < 1e-4
        assert outputs_close(result.model(x * 2), ref(x * 2)) < 1e-4


def test_callback_runs_after_every_step_and_later_steps_see_its_changes():
    """The callback gets the step number; channels it kills after step 1 are what step 2 removes."""
    entry = ZOO["vgg_bn"]
    seen = []

    def callback(model, step):
        seen.append((step, type(model).__name__))
        if step == 1:  # kill the first three channels of the first conv: every slice of them
            with torch.no_grad():
                conv, bn, nxt = model.features[0], model.features[1], model.features[4]
                for t in (conv.weight, conv.bias, bn.weight, bn.bias):
                    t[:3] = 0.0
                nxt.weight[:, :3] = 0.0

    result = prunec.prune(entry.build(), entry.example_inputs(), ratio=0.5, steps=2, callback=callback)
    assert seen == [(1, "VGG"), (2, "VGG")]
    first_conv = [s for r in result.steps[1:] for s in r.removed for s in s.members
                  if s.param == "features.0.weight"]
    assert first_conv and {0, 1, 2} <= set(first_conv[0].indices)


def test_step_targets_are_geometric():
    """Each step keeps the same share of what the previous one kept."""
    assert step_targets(Target("macs", 0.25), 2) == pytest.approx([0.5, 0.25])
    assert step_targets(Target("ratio", 0.75), 2) == pytest.approx([0.5, 0.75])
