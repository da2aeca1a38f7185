"""GhostNet-style block: a cheap depthwise op makes 'ghost' features; concat, then slice."""

from __future__ import annotations

import math

import torch
from torch import nn

from prunec.zoo.registry import image, register


class GhostModule(nn.Module):
    """primary = conv(x); ghost = dwconv(primary); out = cat(primary, ghost)[:, :oup]."""

    def __init__(self, cin: int, oup: int, ratio: int = 2, relu: bool = True) -> None:
        super().__init__()
        self.oup = oup
        init = math.ceil(oup / ratio)
        self.primary = nn.Sequential(nn.Conv2d(cin, init, 1, bias=False), nn.BatchNorm2d(init),
                                     nn.ReLU(inplace=True) if relu else nn.Identity())
        self.cheap = nn.Sequential(nn.Conv2d(init, init * (ratio - 1), 3, 1, 1, groups=init, bias=False),
                                   nn.BatchNorm2d(init * (ratio - 1)), nn.ReLU(inplace=True) if relu else nn.Identity())

    def forward(self, x):
        x1 = self.primary(x)
        x2 = self.cheap(x1)
        out = torch.cat([x1, x2], dim=1)
        return out[:, : self.oup, :, :]


class GhostBottleneck(nn.Module):
    def __init__(self, cin: int, mid: int, cout: int) -> None:
        super().__init__()
        self.ghost1 = GhostModule(cin, mid)
        self.ghost2 = GhostModule(mid, cout, relu=False)
        self.shortcut = nn.Identity() if cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return self.ghost2(self.ghost1(x)) + self.shortcut(x)


class GhostNet(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.blocks = nn.Sequential(GhostBottleneck(16, 24, 16), GhostBottleneck(16, 36, 25),
                                    GhostBottleneck(25, 48, 25))
        self.fc = nn.Linear(25, num_classes)

    def forward(self, x):
        return self.fc(self.blocks(self.stem(x)).mean((2, 3)))


@register("ghostnet", "ghostnet", image(), covers=("concat then slice", "depthwise multiplier", "odd widths"))
def ghostnet() -> nn.Module:
    """Three ghost bottlenecks (one with an odd output width, so the slice drops a channel)."""
    return GhostNet()
