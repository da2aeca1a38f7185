"""Train once, then compile: the zero channels are removed and nothing the model computes changes."""

from __future__ import annotations

import copy

import pytest
import torch
from prunec.passes import RewriteModulePass, TrainGroupSparse, VerifyPass, ZeroGroupsPass

import prunec
from tests.helpers import expected_param_count, state_hash
from tests.optimizers.nets import conv_loss, image_batch, tiny_conv


def test_train_once_compiles_losslessly():
    """HESSO trains the model; the compiled subnet keeps <= 50% MACs and predicts like the trained one."""
    model = tiny_conv()
    x = image_batch(0, 4)[0]
    result = prunec.train_once(model, x, conv_loss, steps=30, optimizer="hesso", target="macs=0.5", lr=0.05,
                               momentum=0.9)
    assert result.trained is model
    assert result.compiled.output_kind == "module"
    assert isinstance(result.model, type(model))
    assert 0.4 <= result.compiled.report.macs_ratio <= 0.5
    removed = {r.group_id: r.channels for r in result.compiled.removed}
    assert removed == result.optimizer.zero_groups()
    assert prunec.count_params(result.model) == expected_param_count(model, result.compiled.removed)
    model.eval()
    test_x, test_y = image_batch(500, 64)
    with torch.no_grad():
        full, small = model(test_x), result.model(test_x)
    assert float((full - small).abs().max()) <= 1e-4 * float(full.abs().max())
    assert torch.equal(full.argmax(1) == test_y, small.argmax(1) == test_y)  # same accuracy, same samples
    assert result.max_difference <= 1e-4


def test_pass_form_in_a_pipeline():
    """TrainGroupSparse provides the masks; the rewrite removes them and verification passes."""
    model = tiny_conv().eval()
    before = state_hash(model)
    x = image_batch(0, 4)[0]
    result = prunec.prune(model, x, target="macs=0.5", pipeline=[
        TrainGroupSparse(optimizer="dhspg", steps=30, loss_fn=conv_loss, options={"lr": 0.05}),
        RewriteModulePass(), VerifyPass()])
    assert state_hash(model) == before  # the user's model was copied, not trained
    assert result.verification is not None and result.verification.passed
    assert 0.4 <= result.report.macs_ratio <= 0.5
    assert any("train-group-sparse: dhspg trained 30 steps" in n for n in result.report.notes)


def test_text_pipeline_with_calibration_batches():
    """'train-group-sparse{...}' in a text pipeline trains on prune()'s calibration batches and loss_fn."""
    model = tiny_conv().eval()
    batches = [image_batch(i) for i in range(4)]
    result = prunec.prune(
        model, batches[0][0], target="ratio=0.25",
        pipeline="train-group-sparse{optimizer=hesso,steps=20},rewrite-module,verify",
        calibration=[b[0] for b in batches],
        loss_fn=lambda out, i: torch.nn.functional.cross_entropy(out, batches[i][1]))
    assert sum(len(r.channels) for r in result.removed) == 5  # a quarter of 20 channels
    assert result.verification is not None and result.verification.passed


def test_zero_groups_pass_removes_only_exact_zeros():
    """A channel at 1e-30 is not removed; a channel at exactly 0.0 is."""
    model = tiny_conv().eval()
    with torch.no_grad():
        for c, value in ((2, 0.0), (5, 1e-30)):
            for t in (model.conv1.weight[c], model.bn1.weight[c:c + 1], model.bn1.bias[c:c + 1],
                      model.conv2.weight[:, c]):
                t.fill_(value)
    result = prunec.prune(model, image_batch(0, 4)[0], target="macs=1.0",
                          pipeline=[ZeroGroupsPass(), RewriteModulePass(), VerifyPass()])
    assert [(r.group_id, r.channels) for r in result.removed] == [(0, (2,))]
    assert result.model.conv1.out_channels == 7


def test_compile_checks_the_trained_model_itself():
    """compile_zero_groups leaves the model untouched and returns a verified subnet of the same class."""
    model = tiny_conv().eval()
    with torch.no_grad():
        model.conv2.weight[3].zero_()
        model.bn2.weight[3] = 0.0
        model.bn2.bias[3] = 0.0
        model.fc.weight[:, 3] = 0.0
    before = copy.deepcopy(model.state_dict())
    result, diff = prunec.compile_zero_groups(model, image_batch(0, 4)[0])
    assert result.model.conv2.out_channels == 11 and result.model.fc.in_features == 11
    assert diff <= 1e-6
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_pass_errors():
    """No loss, an unknown optimizer, or a schedule longer than the pass's steps are reported clearly."""
    x = image_batch(0, 4)[0]
    with pytest.raises(prunec.InputError, match="train-group-sparse needs loss_fn="):
        prunec.prune(tiny_conv().eval(), x, target="macs=0.5",
                     pipeline=[TrainGroupSparse(steps=20), RewriteModulePass()])
    with pytest.raises(prunec.InputError, match="unknown optimizer .adagrad.; choose from hspg, dhspg"):
        prunec.prune(tiny_conv().eval(), x, target="macs=0.5",
                     pipeline=[TrainGroupSparse(optimizer="adagrad", steps=5, loss_fn=conv_loss)])
    with pytest.raises(prunec.PassError, match="did not finish its schedule in 10 steps"):
        prunec.prune(tiny_conv().eval(), x, target="macs=0.5", pipeline=[
            TrainGroupSparse(steps=10, loss_fn=conv_loss, options={"steps": 100}), RewriteModulePass()])


def test_train_once_errors():
    """Non-positive steps, and a schedule that cannot finish, are refused."""
    x = image_batch(0, 4)[0]
    with pytest.raises(prunec.InputError, match="steps must be a positive integer, got 0"):
        prunec.train_once(tiny_conv(), x, conv_loss, steps=0)
    with pytest.raises(prunec.InputError, match="warmup_steps \\+ pruning_steps = 22 exceeds steps=6"):
        prunec.train_once(tiny_conv(), x, conv_loss, steps=6, warmup_steps=2, pruning_steps=20, periods=2)
