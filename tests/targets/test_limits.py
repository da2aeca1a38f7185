"""min_keep, max_ratio, overrides and global ranking shape the plan as documented."""

import numpy as np
import torch
from prunec.zoo import ZOO

import prunec


def kept_per_group(result) -> dict[str, int]:
    """Group name -> channels kept."""
    removed = {r.group_id: len(r.channels) for r in result.removed}
    return {g.name: g.channel_count - removed.get(g.id, 0) for g in result.analysis.groups}


def test_min_keep_and_max_ratio_bound_every_group():
    """At 10% of the MACs no group drops below min_keep channels or loses more than max_ratio."""
    entry = ZOO["resnet_basic"]
    result = prunec.prune(entry.build(), entry.example_inputs(), target="macs=0.2", selection="global",
                          min_keep=6, max_ratio=0.8)
    for g in result.analysis.groups:
        kept = kept_per_group(result)[g.name]
        assert kept >= min(6, g.channel_count)
        assert kept >= g.channel_count - int(np.floor(0.8 * g.channel_count))
    assert 0.196 <= result.report.macs_ratio <= 0.2


def test_overrides_fix_a_module_and_the_rest_meets_the_target():
    """Stage 0 keeps every channel (override 0), one conv of stage 2 loses exactly a quarter; the
    MACs target still lands.
    """
    entry = ZOO["resnet_basic"]
    model = entry.build()
    result = prunec.prune(model, entry.example_inputs(), target="macs=0.4",
                          overrides={"layers.0": 0.0, "layers.2.0.conv1": 0.25})
    kept = kept_per_group(result)
    assert kept["layers.0.0.conv1.weight[0]"] == model.layers[0][0].conv1.out_channels
    assert kept["layers.2.0.conv1.weight[0]"] == model.layers[2][0].conv1.out_channels * 3 // 4
    assert 0.392 <= result.report.macs_ratio <= 0.4


class TwoBranches(torch.nn.Module):
    """Two independent 16-channel hidden layers added at the end."""

    def __init__(self) -> None:
        super().__init__()
        self.a1, self.a2 = torch.nn.Linear(8, 16), torch.nn.Linear(16, 4)
        self.b1, self.b2 = torch.nn.Linear(8, 16), torch.nn.Linear(16, 4)

    def forward(self, x):
        return self.a2(torch.relu(self.a1(x))) + self.b2(torch.relu(self.b1(x)))


def test_global_ranking_takes_more_from_the_group_with_more_weak_channels():
    """Branch a has 12 near-dead units, branch b none: a global cut of 40% takes them all from a,
    where a uniform cut takes 40% of each branch.
    """
    torch.manual_seed(0)
    model = TwoBranches().eval()
    with torch.no_grad():
        model.a1.weight[4:] *= 1e-3
        model.a1.bias[4:] *= 1e-3
        model.a2.weight[:, 4:] *= 1e-3
    x = torch.randn(4, 8)
    glob = kept_per_group(prunec.prune(model, x, ratio=0.375, selection="global"))
    unif = kept_per_group(prunec.prune(model, x, ratio=0.375))
    assert glob == {"a1.weight[0]": 4, "b1.weight[0]": 16}
    assert unif == {"a1.weight[0]": 10, "b1.weight[0]": 10}
