"""The least-squares refit recovers what removed channels carried, and the result stays verified."""

import re

import pytest
import torch

import prunec
from tests.criteria.planted import MLP, TinyCNN
from tests.helpers import state_hash


def mlp_with_scaled_copy() -> MLP:
    """Hidden unit 3 is exactly a fifth of unit 2 (same filter, a fifth of the scale) and has the
    smallest weights, so L2 removes it first and fc2 can absorb it exactly: W[:, 2] += W[:, 3] / 5.
    """
    torch.manual_seed(0)
    model = MLP()
    with torch.no_grad():
        model.fc1.weight[3] = 0.2 * model.fc1.weight[2]
        model.fc1.bias[3] = 0.2 * model.fc1.bias[2]
        model.fc2.weight[:, 3] = 0.1 * model.fc2.weight[:, 3].sign()
    return model.eval()


def _data(n: int = 4, size: int = 32, dims: int = 6) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    return [torch.randn(size, dims, generator=gen) for _ in range(n)]


def _error(model, pruned, x) -> float:
    with torch.no_grad():
        ref = model(x)
        return float((pruned(x) - ref).norm() / ref.norm())


def test_refit_recovers_a_linearly_dependent_channel():
    """Removing a unit that is a fifth of another costs nothing after the refit, but a lot without it."""
    model = mlp_with_scaled_copy()
    cal, held_out = _data(), _data(1, 64)[0] * 1.3
    before = state_hash(model)
    plain = prunec.prune(model, cal[0], ratio=0.125, calibration=cal, ignore=["fc2"])
    refit = prunec.prune(model, cal[0], ratio=0.125, calibration=cal, ignore=["fc2"], reconstruct=True)
    assert state_hash(model) == before, "the refit must work on the copy, not the user's model"
    assert [r.members[0] for r in refit.removed] == [r.members[0] for r in plain.removed]
    assert refit.removed[0].members[0].indices == (3,)
    assert _error(model, plain.model, held_out) > 0.01
    assert _error(model, refit.model, held_out) < 2e-3
    assert refit.verification is not None and refit.verification.passed
    assert any("reconstruct: refitted 1 layer" in n for n in refit.report.notes)


def test_refit_lowers_the_output_error_of_a_conv_net():
    """On a CNN the note's calibration error falls, and held-out output error falls with it."""
    torch.manual_seed(0)
    model = TinyCNN().eval()
    gen = torch.Generator().manual_seed(4)
    base = torch.randn(4, 3, 8, 8, generator=gen)
    # correlated inputs: every batch is a noisy copy of the same few images
    cal = [base.repeat(2, 1, 1, 1) + 0.3 * torch.randn(8, 3, 8, 8, generator=gen) for _ in range(3)]
    test = base.repeat(2, 1, 1, 1) + 0.3 * torch.randn(8, 3, 8, 8, generator=gen)
    plain = prunec.prune(model, cal[0], ratio=0.5, calibration=cal)
    refit = prunec.prune(model, cal[0], ratio=0.5, calibration=cal, reconstruct=True)
    note = next(n for n in refit.report.notes if n.startswith("reconstruct"))
    before, after = (float(v) for v in re.search(r"error (\S+) -> (\S+)\.", note).groups())
    assert after < 0.5 * before
    assert _error(model, refit.model, test) < _error(model, plain.model, test)


def test_refit_needs_calibration():
    """Asking for a refit without data says what to pass."""
    model = mlp_with_scaled_copy()
    with pytest.raises(prunec.PruneError, match="'reconstruct' needs calibration batches"):
        prunec.prune(model, _data()[0], ratio=0.25, reconstruct=True)
