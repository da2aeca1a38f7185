"""A small ResNet for scikit-learn's digits (1x16x16 inputs, 10 classes)."""

from __future__ import annotations

import torch
from torch import nn

from prunec.zoo.registry import register
from prunec.zoo.resnet import BasicBlock


class DigitsResNet(nn.Module):
    """conv stem + three stages of basic blocks + global pool + linear."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64), num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        blocks, c = [], widths[0]
        for i, w in enumerate(widths):
            blocks += [BasicBlock(c, w, 2 if i > 0 else 1), BasicBlock(w, w, 1)]
            c = w
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.fc(self.blocks(self.stem(x)).mean((2, 3)))


def _example() -> torch.Tensor:
    return torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(1))


@register("digits_resnet", "resnet", _example, covers=("residual add", "small data demo"))
def digits_resnet() -> nn.Module:
    """The ResNet used by the digits demos (criteria, train-once)."""
    return DigitsResNet()
