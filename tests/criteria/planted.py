"""Small models with one channel planted to matter least, and helpers to read scores."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import prunec
from prunec.inputs import ExampleInputs
from prunec.pipeline import PruneState
from prunec.scoring import score_channels

PLANTED = 5


class TinyCNN(nn.Module):
    """conv-bn-relu, conv-bn-relu, global pool, linear: two prunable groups of 8 channels."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


def tiny_cnn_with_weak_channel() -> TinyCNN:
    """Channel PLANTED of conv1 has tiny filter, BN scale and outgoing weights."""
    torch.manual_seed(0)
    model = TinyCNN()
    with torch.no_grad():
        for bn in (model.bn1, model.bn2):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.1, 0.1)
        model.conv1.weight[PLANTED] *= 0.01
        model.bn1.weight[PLANTED] = 0.01
        model.bn1.bias[PLANTED] = 0.0
        model.conv2.weight[:, PLANTED] *= 0.01
    return model.eval()


class MLP(nn.Module):
    """6 -> 8 -> 8 -> 3 with ReLUs."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.fc2 = nn.Linear(8, 8)
        self.fc3 = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


DEAD = 2


def mlp_with_dead_channel() -> MLP:
    """Hidden channel DEAD of fc1 has the LARGEST weights but reads only input feature 5, which is
    zero on the calibration data, behind a negative bias: it never fires, so it matters least.
    """
    torch.manual_seed(0)
    model = MLP()
    with torch.no_grad():
        model.fc1.weight[DEAD] = 0.0
        model.fc1.weight[DEAD, 5] = 6.0
        model.fc1.bias[DEAD] = -1.0
        model.fc2.weight[:, DEAD] = 2.0
    return model.eval()


def mlp_data(batches: int = 3, size: int = 16) -> list[torch.Tensor]:
    """Calibration batches whose feature 5 is always zero."""
    gen = torch.Generator().manual_seed(1)
    out = []
    for _ in range(batches):
        x = torch.randn(size, 6, generator=gen)
        x[:, 5] = 0.0
        out.append(x)
    return out


def scores_of(model: nn.Module, example: torch.Tensor, criterion, calibration=(), loss_fn=None,
              analysis=None):
    """(analysis, group id -> channel scores) exactly as the `score` pass computes them."""
    analysis = analysis or prunec.analyze(model, example)
    state = PruneState(model=model, inputs=ExampleInputs.from_user(example), analysis=analysis,
                       calibration=tuple(ExampleInputs.from_user(c) for c in calibration), loss_fn=loss_fn)
    return analysis, score_channels(state, criterion)


def channel_of(analysis, param: str, index: int) -> tuple[int, int]:
    """(group id, channel) holding entry `index` of `param`'s axis 0."""
    for g in analysis.groups:
        for m, chan in zip(g.members, g.channel_of):
            if m.param == param and m.dim == 0 and index in m.indices:
                return g.id, int(chan[m.indices.index(index)])
    raise KeyError(f"{param}[{index}] is in no group")


def rank_of(scores: np.ndarray, channel: int) -> int:
    """0 for the lowest score (ties broken by channel number, as selection does)."""
    order = np.argsort(scores, kind="stable")
    return int(np.flatnonzero(order == channel)[0])
