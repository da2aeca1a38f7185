"""CRIC: shrink-and-restore cycles veto indispensable units that a saliency score calls redundant."""

from __future__ import annotations

import copy

import pytest
import torch
from prunec.passes.optimizers import CRIC, HESSO
from torch import nn

import prunec
from tests.optimizers.nets import conv_loss, image_batch, through_disk, tiny_conv, train


def trap_net() -> nn.Sequential:
    """Hidden unit 0 is small but carries the whole signal; units 1-7 are large but dead (bias -100)."""
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model[0].weight.copy_(torch.randn(8, 4, generator=gen) * 2.0)
        model[0].bias.fill_(-100.0)
        model[2].weight.copy_(torch.randn(1, 8, generator=gen))
        model[2].bias.zero_()
        model[0].weight[0] = torch.tensor([0.3, 0.0, 0.0, 0.0])
        model[0].bias[0] = 0.0
        model[2].weight[0, 0] = 0.3
    return model


def trap_loss(model: nn.Module, step: int) -> torch.Tensor:
    """The target is 0.09 * relu(x0): exactly what unit 0 computes."""
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(step))
    return ((model(x).squeeze(1) - 0.09 * torch.relu(x[:, 0])) ** 2).mean()


@pytest.fixture(scope="module")
def trap_analysis():
    return prunec.analyze(trap_net(), torch.randn(2, 4))


def test_magnitude_trap_hesso_falls_in_cric_does_not(trap_analysis):
    """Ranking by magnitude, HESSO zeroes the essential unit; CRIC measures its removal cost, vetoes it,
    and zeroes four dead units instead, keeping the loss at zero.
    """
    kw = dict(warmup_steps=5, pruning_steps=10, periods=2, lr=0.01, criteria={"magnitude": 1.0})
    hesso_model = trap_net()
    hesso = HESSO(hesso_model, trap_analysis, "ratio=0.5", **kw)
    train(hesso_model, hesso, trap_loss, range(15))
    assert 0 in hesso.zero_groups()[0]
    assert float(trap_loss(hesso_model, 999)) > 1e-3

    cric_model = trap_net()
    cric = CRIC(cric_model, trap_analysis, "ratio=0.5", max_cycles=3, cycle_steps=10, **kw)
    train(cric_model, cric, trap_loss, range(45))
    assert cric.finished
    assert cric.history == [(4, 1), (4, 0)]
    zero = cric.zero_groups()[0]
    assert 0 not in zero and len(zero) == 4
    assert float(trap_loss(cric_model, 999)) < 1e-10


def test_cycles_restore_the_snapshot():
    """After a cycle, weights and BN running statistics are back at their values from the cycle's start
    (the first cycle step's forward pass has run by then: the snapshot is taken inside step())."""
    model = tiny_conv()
    analysis = prunec.analyze(model, image_batch(0, 2)[0])
    opt = CRIC(model, analysis, "macs=0.5", warmup_steps=2, pruning_steps=4, periods=2, max_cycles=2,
               cycle_steps=5, lr=0.05, momentum=0.9)
    train(model, opt, conv_loss, range(2))
    opt.zero_grad()
    loss = conv_loss(model, 2)
    start = copy.deepcopy(model.state_dict())
    loss.backward()
    opt.step()                                 # the cycle starts: snapshot, then shrink
    train(model, opt, conv_loss, range(3, 7))  # the rest of the cycle; at its end: restore
    assert opt.cycle == 1
    assert not torch.equal(model.bn1.running_mean, torch.zeros(8))
    for name, value in model.state_dict().items():
        assert torch.equal(value, start[name]), name


def test_cric_state_dict_round_trip_mid_cycle_is_bit_identical():
    """Saving inside a cycle (snapshot held) and resuming reproduces the uninterrupted run exactly."""
    analysis = prunec.analyze(tiny_conv(), image_batch(0, 2)[0])
    kw = dict(warmup_steps=3, pruning_steps=8, periods=2, max_cycles=2, cycle_steps=4, lr=0.03, momentum=0.9)
    model = tiny_conv()
    opt = CRIC(model, analysis, "macs=0.5", **kw)
    train(model, opt, conv_loss, range(5))
    assert opt.phase == "cycle"
    saved = through_disk((model.state_dict(), opt.state_dict()))
    train(model, opt, conv_loss, range(5, 22))
    other = tiny_conv(seed=4)
    other.load_state_dict(saved[0])
    opt2 = CRIC(other, analysis, "macs=0.5", **kw)
    opt2.load_state_dict(saved[1])
    train(other, opt2, conv_loss, range(5, 22))
    for (name, a), b in zip(model.state_dict().items(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert opt2.finished and opt.zero_groups() == opt2.zero_groups()


def test_cric_needs_steps_for_its_cycles(trap_analysis):
    """Steps must cover warm-up, the cycles and the progressive phase."""
    with pytest.raises(prunec.InputError, match=r"CRIC needs .* = 65 steps but steps=50"):
        CRIC(trap_net(), trap_analysis, "ratio=0.5", steps=50, max_cycles=4, cycle_steps=10)
