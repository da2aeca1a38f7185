"""Pruning targets of 0, 1, negative, > 1, NaN, malformed or unreachable: TargetError, model untouched."""

import pytest
import torch
from torch import nn

import prunec
from tests.hostile.common import small, snapshot


@pytest.mark.parametrize("kwargs, match", [
    ({"ratio": 1.0}, r"ratio=1.0 is the fraction of channels to REMOVE and must be in \[0, 1\)"),
    ({"ratio": -0.1}, r"ratio=-0.1 is the fraction of channels to REMOVE and must be in \[0, 1\)"),
    ({"ratio": 1.5}, r"ratio=1.5 is the fraction of channels to REMOVE"),
    ({"ratio": float("nan")}, r"target ratio must be a number, got nan"),
    ({"ratio": "0.5"}, r"ratio must be a number in \[0, 1\), got '0.5'"),
    ({"target": "macs=0"}, r"macs=0.0 is the fraction of macs to KEEP and must be in \(0, 1\]"),
    ({"target": "params=-0.5"}, r"params=-0.5 is the fraction of params to KEEP and must be in \(0, 1\]"),
    ({"target": "macs=1.5"}, r"macs=1.5 is the fraction of macs to KEEP"),
    ({"target": "flops=0.5"}, r"unknown target kind 'flops'; use one of ratio, macs, params, latency"),
    ({"target": "macs"}, r"target 'macs' must look like 'macs=0.5'"),
    ({"target": "macs=half"}, r"target 'macs=half': 'half' is not a number"),
    ({"ratio": 0.5, "target": "macs=0.5"}, r"give either ratio= or target=, not both"),
    ({}, r"nothing to prune towards: pass ratio=0.5"),
    ({"ratio": 0.5, "round_to": 0}, r"round_to must be a positive integer, got 0"),
])
def test_invalid_target(kwargs, match):
    """Each invalid target gets its own message; nothing is traced or changed."""
    model, x = small()
    before = snapshot(model)
    with pytest.raises(prunec.TargetError, match=match):
        prunec.prune(model, x, **kwargs)
    assert snapshot(model) == before


class _MostlyPinned(nn.Module):
    """A big conv feeding the output directly (pinned) and a tiny prunable one."""

    def __init__(self) -> None:
        super().__init__()
        self.small = nn.Conv2d(3, 2, 1)
        self.big = nn.Conv2d(2, 32, 3, padding=1)

    def forward(self, x):
        return self.big(torch.relu(self.small(x)))


def test_unreachable_target_names_the_closest_achievable():
    """macs=0.05 when most MACs are in pinned layers: the message gives the closest achievable target."""
    model = _MostlyPinned().eval()
    before = snapshot(model)
    with pytest.raises(prunec.TargetError, match=r"macs=0.05 cannot be reached: removing 99% of every "
                                                 r"prunable group still keeps .*The closest achievable target "
                                                 r"is macs=0\.\d+"):
        prunec.prune(model, torch.randn(2, 3, 8, 8), target="macs=0.05")
    assert snapshot(model) == before


@pytest.mark.parametrize("kwargs", [{"ratio": 0.0}, {"target": "params=1"}])
def test_targets_that_keep_everything_are_no_ops(kwargs):
    """ratio=0 and params=1 are valid: nothing is removed, the result is verified, the original kept."""
    model, x = small()
    before = snapshot(model)
    result = prunec.prune(model, x, **kwargs)
    assert result.removed == () and result.report.params_after == result.report.params_before
    assert result.verification is not None and result.verification.passed
    assert snapshot(model) == before
