"""Inception-style block: parallel branches of different kernel sizes concatenated."""

from __future__ import annotations

import torch
from torch import nn

from prunec.zoo.registry import image, register


def cbr(cin: int, cout: int, k: int, **kw: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, bias=False, **kw), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class InceptionBlock(nn.Module):
    def __init__(self, cin: int, b1: int, b3r: int, b3: int, b5r: int, b5: int, pool: int) -> None:
        super().__init__()
        self.b1 = cbr(cin, b1, 1)
        self.b3 = nn.Sequential(cbr(cin, b3r, 1), cbr(b3r, b3, 3, padding=1))
        self.b5 = nn.Sequential(cbr(cin, b5r, 1), cbr(b5r, b5, (1, 5), padding=(0, 2)), cbr(b5, b5, (5, 1), padding=(2, 0)))
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1), cbr(cin, pool, 1))

    def forward(self, x):
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], 1)


class InceptionNet(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = cbr(3, 16, 3, padding=1)
        self.block1 = InceptionBlock(16, 8, 8, 12, 4, 6, 6)
        self.pool = nn.MaxPool2d(2)
        self.block2 = InceptionBlock(32, 12, 8, 16, 4, 8, 8)
        self.fc = nn.Linear(44, num_classes)

    def forward(self, x):
        x = self.block2(self.pool(self.block1(self.stem(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


@register("inception", "inception", image(), covers=("multi-branch concat", "asymmetric kernels", "pool branch"))
def inception() -> nn.Module:
    """Two Inception-style blocks."""
    return InceptionNet()
