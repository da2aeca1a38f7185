"""HSPG and DHSPG: group-lasso steps, the half-space projection, exact zeros, exact resumption."""

from __future__ import annotations

import pytest
import torch
from prunec.passes.optimizers import DHSPG, HSPG

import prunec
from tests.optimizers.nets import conv_loss, image_batch, mlp, mlp_loss, through_disk, tiny_conv, train


@pytest.fixture(scope="module")
def conv_analysis():
    return prunec.analyze(tiny_conv(), image_batch(0, 2)[0])


@pytest.fixture(scope="module")
def mlp_analysis():
    return prunec.analyze(mlp(), torch.randn(2, 8))


def test_dhspg_zeroes_exactly_the_redundant_set_by_window_end(conv_analysis):
    """Redundant units are exactly 0.0 when the window closes; important units never are."""
    model = tiny_conv()
    opt = DHSPG(model, conv_analysis, "macs=0.5", warmup_steps=4, pruning_steps=16, lr=0.05, momentum=0.9)
    train(model, opt, conv_loss, range(5))
    redundant = opt.redundant.clone()
    assert bool(redundant.any()) and not bool(opt.pruned.all())
    train(model, opt, conv_loss, range(5, 19))
    assert not bool((opt.units.exact_zeros() & ~redundant).any())
    train(model, opt, conv_loss, range(19, 26))
    assert opt.finished
    assert torch.equal(opt.units.exact_zeros(), redundant)
    assert 0.4 <= opt.budget.kept(redundant.numpy()) <= 0.5


def test_dhspg_half_space_projects_before_the_deadline(mlp_analysis):
    """The half-space test zeroes some redundant units before the window ends; the deadline the rest."""
    model = mlp()
    opt = DHSPG(model, mlp_analysis, "ratio=0.5", warmup_steps=5, pruning_steps=40, lr=0.05)
    train(model, opt, mlp_loss, range(44))  # stop one step before the deadline projection
    early = int(opt.pruned.sum())
    assert 4 <= early < 16
    train(model, opt, mlp_loss, range(44, 50))
    assert int(opt.units.exact_zeros().sum()) == 16


def test_dhspg_adaptive_lambda_makes_a_shrinking_descent_direction(mlp_analysis):
    """Where the base direction grows a unit, lambda lands where d + lambda x/||x|| shrinks it and still
    descends; where the cap binds, lambda is lmbda_max times the base penalty.
    """
    model = mlp()
    opt = DHSPG(model, mlp_analysis, "ratio=0.5", steps=20, lr=0.1, lmbda=1e-3)
    gen = torch.Generator().manual_seed(3)
    x = [torch.randn(p.shape, generator=gen) for p in opt.units.params]
    d = [-0.5 * xi + 0.3 * torch.randn(xi.shape, generator=gen) for xi in x]  # mostly grows x
    u = opt.units
    xn = u.reduce([xi * xi for xi in x]).sqrt()
    ip = u.reduce([xi * di for xi, di in zip(x, d, strict=True)])
    dd = u.reduce([di * di for di in d])
    assert bool((ip < 0).all())
    opt.base_lambda = xn.clone()  # large enough that the cap does not bind
    lam = opt._adaptive_lambda(x, d).float()
    shrink = ip + lam * xn          # <x, d + lam x/||x||>
    descent = dd + lam * ip / xn    # <d, d + lam x/||x||>
    assert bool((shrink > 0).all()) and bool((descent > 0).all())
    opt.base_lambda = torch.full((u.count,), 1e-3)
    capped = opt._adaptive_lambda(x, d).float()
    assert torch.allclose(capped, torch.full((u.count,), 1e-2))


def test_dhspg_state_dict_round_trip_is_bit_identical(conv_analysis):
    """Resuming DHSPG inside its window reproduces the uninterrupted run exactly."""
    kw = dict(warmup_steps=3, pruning_steps=15, lr=0.03, momentum=0.9, weight_decay=1e-3)
    model = tiny_conv()
    opt = DHSPG(model, conv_analysis, "macs=0.5", **kw)
    train(model, opt, conv_loss, range(8))
    saved = through_disk((model.state_dict(), opt.state_dict()))
    train(model, opt, conv_loss, range(8, 22))
    other = tiny_conv(seed=9)
    other.load_state_dict(saved[0])
    opt2 = DHSPG(other, conv_analysis, "macs=0.5", **kw)
    opt2.load_state_dict(saved[1])
    train(other, opt2, conv_loss, range(8, 22))
    for (name, a), b in zip(model.state_dict().items(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_hspg_group_lasso_reaches_exact_zeros(mlp_analysis):
    """A strong group lasso drives some hidden units to exactly 0.0 and keeps them there."""
    model = mlp()
    opt = HSPG(model, mlp_analysis, None, lmbda=0.1, epsilon=0.0, half_space_start=10, lr=0.05)
    train(model, opt, mlp_loss, range(150))
    zero = opt.units.exact_zeros()
    assert int(zero.sum()) >= 4
    assert torch.equal(zero, opt.pruned)
    first = model[0].weight.detach()
    for c in opt.zero_groups().get(0, ()):
        assert float(first[c].abs().max()) == 0.0


def test_hspg_never_empties_a_layer(mlp_analysis):
    """Even a penalty strong enough to kill everything leaves one channel in every hidden layer."""
    model = mlp()
    opt = HSPG(model, mlp_analysis, None, lmbda=1.0, lr=0.05)
    train(model, opt, mlp_loss, range(100))
    assert int(opt.units.exact_zeros().sum()) == 30
    assert all(len(c) == 15 for c in opt.zero_groups().values())


def test_hspg_target_caps_the_projection(mlp_analysis):
    """With ratio=0.25 as a cap, HSPG stops projecting at exactly a quarter of the 32 hidden units."""
    model = mlp()
    opt = HSPG(model, mlp_analysis, "ratio=0.25", lmbda=0.2, epsilon=0.2, lr=0.05)
    train(model, opt, mlp_loss, range(150))
    assert int(opt.units.exact_zeros().sum()) == 8
    assert opt.finished


def test_epsilon_out_of_range_is_rejected(mlp_analysis):
    """The half-space threshold must lie in [0, 1)."""
    with pytest.raises(prunec.InputError, match=r"epsilon must be in \[0, 1\), got 1.5"):
        HSPG(mlp(), mlp_analysis, None, epsilon=1.5)
    with pytest.raises(prunec.InputError, match=r"epsilon must be in \[0, 1\), got -0.1"):
        DHSPG(mlp(), mlp_analysis, "macs=0.5", steps=10, epsilon=-0.1)
