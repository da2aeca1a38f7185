"""Data-driven criteria: what they need, and calibration batches of another shape."""

import pytest
import torch
from torch import nn

import prunec
from tests.criteria.planted import PLANTED, channel_of, rank_of, scores_of, tiny_cnn_with_weak_channel


@pytest.mark.parametrize("criterion", ["taylor", "hessian", "activation"])
def test_data_driven_criterion_without_calibration_says_what_to_pass(criterion):
    """No calibration batches: a PruneError naming the criterion and the argument to pass."""
    model = tiny_cnn_with_weak_channel()
    with pytest.raises(prunec.PruneError, match=f"criterion '{criterion}' needs calibration batches"):
        prunec.prune(model, torch.randn(2, 3, 8, 8), ratio=0.5, criterion=criterion)


def test_calibration_batches_may_have_another_batch_size():
    """Activation taps re-trace for a batch of another size and still find the weak channel."""
    model = tiny_cnn_with_weak_channel()
    cal = [torch.randn(5, 3, 8, 8) for _ in range(2)]
    analysis, scores = scores_of(model, torch.randn(2, 3, 8, 8), "activation", cal)
    gid, chan = channel_of(analysis, "conv1.weight", PLANTED)
    assert rank_of(scores[gid], chan) == 0


class ShapeDependent(nn.Module):
    """Runs one more op for batches larger than 2: the traced program depends on the batch size."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 8)
        self.b = nn.Linear(8, 2)

    def forward(self, x):
        h = torch.relu(self.a(x))
        if x.shape[0] > 2:
            h = h * 2.0
        return self.b(h)


def test_calibration_that_traces_differently_is_rejected():
    """A batch whose shape changes the program cannot be tapped by op name: InputError says why."""
    model = ShapeDependent().eval()
    with pytest.raises(prunec.InputError, match="traces to a different program"):
        prunec.prune(model, torch.randn(2, 4), ratio=0.5, criterion="activation",
                     calibration=[torch.randn(4, 4)])


def test_every_criterion_prunes_end_to_end():
    """Each registered criterion drives a verified prune of a small CNN (half of each group)."""
    from prunec.scoring import CRITERIA

    model = tiny_cnn_with_weak_channel()
    x = torch.randn(2, 3, 8, 8)
    cal = [x, x.flip(0)]
    kept = {}
    for name in sorted(CRITERIA):
        result = prunec.prune(model, x, ratio=0.5, criterion=name, calibration=cal)
        assert result.verification is not None and result.verification.passed
        kept[name] = result.report.channels_removed
    assert set(kept.values()) == {8}, kept
