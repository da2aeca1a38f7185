"""Every criterion ranks a channel planted to matter least as the least important one."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from tests.criteria.planted import (
    DEAD,
    PLANTED,
    channel_of,
    mlp_data,
    mlp_with_dead_channel,
    rank_of,
    scores_of,
    tiny_cnn_with_weak_channel,
)

DATA_FREE = ["l1", "l2", "magnitude", "bn-scale", "lamp"]
DATA_DRIVEN = ["taylor", "hessian", "activation"]


@pytest.mark.parametrize("criterion", DATA_FREE)
def test_data_free_criterion_ranks_weak_channel_last(criterion):
    """A channel with tiny filter, BN scale and outgoing weights gets the lowest score of its group."""
    model = tiny_cnn_with_weak_channel()
    analysis, scores = scores_of(model, torch.randn(2, 3, 8, 8), criterion)
    gid, chan = channel_of(analysis, "conv1.weight", PLANTED)
    assert rank_of(scores[gid], chan) == 0
    assert scores[gid][chan] < 0.5 * np.sort(scores[gid])[1]


def _ce_loss(batches):
    gen = torch.Generator().manual_seed(2)
    labels = [torch.randint(0, 3, (len(b),), generator=gen) for b in batches]
    return lambda out, i: F.cross_entropy(out, labels[i])


@pytest.mark.parametrize("criterion", DATA_DRIVEN)
def test_data_driven_criterion_ranks_dead_channel_last(criterion):
    """A hidden unit with the largest weights that never fires on the data scores lowest (exactly 0)."""
    model = mlp_with_dead_channel()
    data = mlp_data()
    analysis, scores = scores_of(model, data[0], criterion, data, _ce_loss(data))
    gid, chan = channel_of(analysis, "fc1.weight", DEAD)
    assert rank_of(scores[gid], chan) == 0
    assert scores[gid][chan] == pytest.approx(0.0, abs=1e-9)
    assert np.sort(scores[gid])[1] > 1e-12  # every live unit scores above it


def test_dead_channel_fools_weight_magnitude():
    """The same dead unit ranks FIRST by L2: only data reveals it (the planted model is a real test)."""
    model = mlp_with_dead_channel()
    analysis, scores = scores_of(model, mlp_data()[0], "l2")
    gid, chan = channel_of(analysis, "fc1.weight", DEAD)
    assert rank_of(scores[gid], chan) == len(scores[gid]) - 1


def test_data_driven_criteria_use_the_label_free_loss_without_loss_fn():
    """Without loss_fn the outputs' mean square drives the gradients and still finds the dead unit."""
    model = mlp_with_dead_channel()
    data = mlp_data()
    analysis, scores = scores_of(model, data[0], "taylor", data)
    gid, chan = channel_of(analysis, "fc1.weight", DEAD)
    assert rank_of(scores[gid], chan) == 0


def test_random_ignores_the_planted_channel():
    """Random ranks the weak channel last at chance rate (about 1 in 8 seeds), reproducibly per seed."""
    from prunec.passes import Random

    model = tiny_cnn_with_weak_channel()
    x = torch.randn(2, 3, 8, 8)
    analysis, first = scores_of(model, x, Random(seed=3))
    _, again = scores_of(model, x, Random(seed=3))
    gid, chan = channel_of(analysis, "conv1.weight", PLANTED)
    np.testing.assert_array_equal(first[gid], again[gid])
    last = sum(rank_of(scores_of(model, x, Random(seed=s), analysis=analysis)[1][gid], chan) == 0
               for s in range(48))
    assert 1 <= last <= 14  # expected 6 of 48; a criterion that saw the weights would hit 48


def test_bn_scale_falls_back_to_l2_without_norm_layers():
    """In an MLP no group has a norm scale, so bn-scale ranks exactly as L2 does."""
    model = mlp_with_dead_channel()
    x = mlp_data()[0]
    _, bn = scores_of(model, x, "bn-scale")
    _, l2 = scores_of(model, x, "l2")
    for gid in l2:
        np.testing.assert_allclose(bn[gid], l2[gid])


def test_relative_scores_are_mean_normalized_and_absolute_ones_are_not():
    """The score pass divides relative criteria by their group mean; LAMP keeps its own scale."""
    model = tiny_cnn_with_weak_channel()
    x = torch.randn(2, 3, 8, 8)
    _, l2 = scores_of(model, x, "l2")
    _, lamp = scores_of(model, x, "lamp")
    for gid in l2:
        assert np.mean(l2[gid]) == pytest.approx(1.0)
        assert lamp[gid].max() <= 1.0 + 1e-9
