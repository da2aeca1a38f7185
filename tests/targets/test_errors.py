"""Impossible, contradictory or malformed targets raise TargetError (or InputError) saying what can."""

import re

import pytest
import torch
from prunec.zoo import ZOO

import prunec


@pytest.fixture(scope="module")
def resnet():
    """The small basic-block ResNet of the zoo and its example input."""
    entry = ZOO["resnet_basic"]
    return entry.build(), entry.example_inputs()


def test_unreachable_target_names_the_closest_achievable_figure(resnet):
    """max_ratio=0.5 cannot reach 5% of the MACs; the message gives the smallest reachable share."""
    model, x = resnet
    with pytest.raises(prunec.TargetError, match=r"closest achievable target is macs=0\.\d{3}") as info:
        prunec.prune(model, x, target="macs=0.05", max_ratio=0.5)
    closest = float(re.search(r"macs=(0\.\d+)\.$", str(info.value)).group(1))
    reached = prunec.prune(model, x, target=f"macs={closest}", max_ratio=0.5)
    assert reached.report.macs_ratio == pytest.approx(closest, abs=2e-3)


def test_ratio_above_max_ratio_is_contradictory(resnet):
    """Removing 60% of every group contradicts 'never more than 40% of a group'."""
    model, x = resnet
    with pytest.raises(prunec.TargetError, match=r"ratio=0.6 contradicts max_ratio=0.4.*ratio=0.4"):
        prunec.prune(model, x, ratio=0.6, max_ratio=0.4)


def test_overrides_that_keep_everything_make_a_target_unreachable(resnet):
    """Keeping every channel (override 0 on the whole model) leaves no way to cut MACs."""
    model, x = resnet
    with pytest.raises(prunec.TargetError, match=r"cannot be reached.*keeps 100\.0% of the macs"):
        prunec.prune(model, x, target="macs=0.5", overrides={"conv1": 0.0, "layers": 0.0})


def test_coarse_rounding_names_the_figures_on_both_sides():
    """Repvgg's two groups with round_to=8 cannot land within 2% of 0.5: both neighbours are named."""
    entry = ZOO["repvgg"]
    with pytest.raises(prunec.TargetError, match=r"cannot be met within 2%.*macs=\S+ \(below\) and "
                                                 r"macs=\S+ \(above\)"):
        prunec.prune(entry.build(), entry.example_inputs(), target="macs=0.5", round_to=8)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"min_keep": 0}, "min_keep must be an integer >= 1"),
    ({"max_ratio": 1.5}, r"max_ratio=1.5 is the largest fraction"),
    ({"overrides": {"layers.0": 1.2}}, r"override 'layers.0': 1.2 is the fraction"),
    ({"selection": "best"}, r"selection='best'; use 'uniform'"),
    ({"steps": 0}, "steps must be a positive integer"),
    ({"callback": 3}, "callback must be callable"),
    ({"round_to": 0}, "round_to must be a positive integer"),
])
def test_malformed_options_raise_target_error(resnet, kwargs, message):
    """Each malformed option is rejected before anything runs, with what it should be."""
    model, x = resnet
    with pytest.raises(prunec.TargetError, match=message):
        prunec.prune(model, x, target="macs=0.5", **kwargs)


def test_override_of_an_unknown_module_is_an_input_error(resnet):
    """A misspelt module name in overrides is named, with the closest real names."""
    model, x = resnet
    with pytest.raises(prunec.InputError, match=r"overrides= names module 'layers.9'.*did you mean"):
        prunec.prune(model, x, target="macs=0.5", overrides={"layers.9": 0.1})


def test_override_of_a_module_without_prunable_channels(resnet):
    """An override on a module whose channels are all pinned matches no group: TargetError says so."""
    model, x = resnet
    with pytest.raises(prunec.TargetError, match=r"override 'fc' matches no prunable group"):
        prunec.prune(model, x, target="macs=0.5", overrides={"fc": 0.1})


def test_latency_target_below_what_the_table_allows():
    """A latency target the smallest allowed model cannot reach is a TargetError, before measuring."""
    from tests.targets.test_latency import fake_model

    model = ZOO["vgg_bn"].build()
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(prunec.TargetError, match=r"latency=0.05 cannot be reached"):
        prunec.prune(model, x, target="latency=0.05", max_ratio=0.3, latency=fake_model(model, x))
