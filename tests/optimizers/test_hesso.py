"""HESSO: progressive selection, exact zeros at the end of each period, exact resumption."""

from __future__ import annotations

import pytest
import torch
from prunec.passes.optimizers import HESSO

import prunec
from tests.optimizers.nets import conv_loss, image_batch, mlp, mlp_loss, through_disk, tiny_conv, train


@pytest.fixture(scope="module")
def conv_analysis():
    return prunec.analyze(tiny_conv(), image_batch(0, 2)[0])


def _unit_max(opt: HESSO) -> torch.Tensor:
    return opt.units.reduce([p.detach() for p in opt.units.params], "amax")


def test_redundant_units_reach_exact_zero_at_period_end(conv_analysis):
    """Units chosen at a period's start are non-zero until its last step and exactly 0.0 after it."""
    model = tiny_conv()
    opt = HESSO(model, conv_analysis, "macs=0.5", warmup_steps=4, pruning_steps=12, periods=3, lr=0.05,
                momentum=0.9)
    period = opt.schedule.period
    for step in range(4 + 3 * period + 3):
        train(model, opt, conv_loss, range(step, step + 1))
        j = step - 4
        if j >= 0 and j < 3 * period:
            active = opt.active if j % period != period - 1 else None
            if active is not None:
                assert bool((_unit_max(opt)[active] > 0).all()), f"zero before the period ended (step {step})"
            else:
                done = opt.pruned
                assert bool((_unit_max(opt)[done] == 0.0).all())
    zero = opt.units.exact_zeros()
    assert torch.equal(zero, opt.pruned)
    assert opt.finished
    assert 0.4 <= opt.planned_ratio() <= 0.5  # 20 units: one unit is worth several points here
    for p in opt.units.params:  # exactly 0.0, not tiny: every element of every zero unit
        assert p.detach().abs().min() == 0.0


def test_target_reached_and_zero_groups_match_plan(conv_analysis):
    """After the schedule, zero_groups() is the plan and the compiled model keeps <= 50% of the MACs."""
    model = tiny_conv()
    opt = HESSO(model, conv_analysis, "macs=0.5", steps=40, lr=0.05, momentum=0.9)
    train(model, opt, conv_loss, range(40))
    assert opt.zero_groups() == opt.redundant_groups()
    kept = opt.budget.kept(opt.units.exact_zeros().numpy())
    assert 0.4 <= kept <= 0.5


@pytest.mark.parametrize("variant", ["sgd", "adamw"])
def test_state_dict_round_trip_continues_bit_identically(conv_analysis, variant):
    """Saving mid-period and loading into a fresh model and optimizer gives the same weights, bit for bit."""
    kw = dict(steps=30, lr=0.02 if variant == "sgd" else 3e-3, variant=variant, weight_decay=1e-3,
              momentum=0.9)
    model = tiny_conv()
    opt = HESSO(model, conv_analysis, "macs=0.5", **kw)
    train(model, opt, conv_loss, range(8))          # stop inside the second period
    assert bool(opt.active.any())
    saved_model, saved_opt = through_disk((model.state_dict(), opt.state_dict()))
    train(model, opt, conv_loss, range(8, 30))

    other = tiny_conv(seed=5)
    other.load_state_dict(saved_model)
    opt2 = HESSO(other, conv_analysis, "macs=0.5", **kw)
    opt2.load_state_dict(saved_opt)
    train(other, opt2, conv_loss, range(8, 30))
    for (name, a), b in zip(model.state_dict().items(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert opt.zero_groups() == opt2.zero_groups()


def test_parameter_groups_keep_their_own_lr_and_weight_decay(conv_analysis):
    """A parameter group with lr=0 never moves (outside projections); the others train."""
    model = tiny_conv()
    frozen = [model.fc.weight, model.fc.bias]
    rest = [p for p in model.parameters() if all(p is not q for q in frozen)]
    opt = HESSO(model, conv_analysis, "macs=0.5", steps=20, lr=0.05,
                params=[{"params": rest, "weight_decay": 1e-2}, {"params": frozen, "lr": 0.0}])
    bias = model.fc.bias.detach().clone()
    conv = model.conv1.weight.detach().clone()
    train(model, opt, conv_loss, range(3))  # warm-up only: no projection yet
    assert torch.equal(model.fc.bias.detach(), bias)
    assert not torch.equal(model.conv1.weight.detach(), conv)
    assert opt.param_groups[0]["weight_decay"] == 1e-2 and opt.param_groups[1]["lr"] == 0.0


def test_amp_grad_scaler_and_clipping(conv_analysis):
    """With GradScaler (skipping an inf step) and gradient clipping, HESSO still ends with exact zeros."""
    model = tiny_conv()
    opt = HESSO(model, conv_analysis, "macs=0.5", steps=24, lr=0.05, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
    done = 0
    for step in range(25):
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = conv_loss(model, step)
        if step == 5:
            loss = loss * float("inf")  # overflow: the scaler must skip this step
        scaler.scale(loss.float()).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        before = opt.num_steps
        scaler.step(opt)
        scaler.update()
        done += opt.num_steps - before
    assert done == 24 and opt.num_steps == 24
    assert opt.finished
    assert torch.equal(opt.units.exact_zeros(), opt.pruned) and bool(opt.pruned.any())


def test_mlp_with_adam_reaches_target():
    """Adam variant on an MLP: a ratio target zeroes exactly that share of hidden channels."""
    model = mlp()
    analysis = prunec.analyze(model, torch.randn(2, 8))
    opt = HESSO(model, analysis, "ratio=0.5", steps=40, variant="adam", lr=1e-2)
    losses = train(model, opt, mlp_loss, range(40))
    assert sum(len(c) for c in opt.zero_groups().values()) == 16
    assert losses[-1] < losses[0]


def test_schedule_errors(conv_analysis):
    """Too few steps for the schedule, or no target, are reported before training starts."""
    with pytest.raises(prunec.InputError, match=r"warmup_steps \+ pruning_steps = 30 exceeds steps=20"):
        HESSO(tiny_conv(), conv_analysis, "macs=0.5", steps=20, warmup_steps=10, pruning_steps=20)
    with pytest.raises(prunec.InputError, match="give steps="):
        HESSO(tiny_conv(), conv_analysis, "macs=0.5")
    with pytest.raises(prunec.InputError, match="pruning_steps=2 must be at least periods=4"):
        HESSO(tiny_conv(), conv_analysis, "macs=0.5", warmup_steps=1, pruning_steps=2)
    with pytest.raises(prunec.InputError, match="variant='rmsprop'; use one of sgd, adam, adamw"):
        HESSO(tiny_conv(), conv_analysis, "macs=0.5", steps=20, variant="rmsprop")


def test_loading_a_foreign_state_dict_is_refused(conv_analysis):
    """A plain torch optimizer's state_dict cannot be loaded into HESSO."""
    model = tiny_conv()
    opt = HESSO(model, conv_analysis, "macs=0.5", steps=20)
    with pytest.raises(prunec.InputError, match="has no 'group_sparse' entry"):
        opt.load_state_dict(torch.optim.SGD(model.parameters(), lr=0.1).state_dict())
