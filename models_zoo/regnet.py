"""RegNet-style: bottlenecks whose 3x3 is grouped with a fixed group width, plus SE."""

from __future__ import annotations

import torch
from torch import nn

from prunec.zoo.registry import image, register


class RegBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, group_width: int) -> None:
        super().__init__()
        groups = cout // group_width
        self.a = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(cout, cout, 3, stride, 1, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU())
        self.se_reduce = nn.Conv2d(cout, max(4, cin // 4), 1)
        self.se_expand = nn.Conv2d(max(4, cin // 4), cout, 1)
        self.c = nn.Sequential(nn.Conv2d(cout, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.proj = None if (stride == 1 and cin == cout) else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.b(self.a(x))
        s = torch.sigmoid(self.se_expand(torch.relu(self.se_reduce(y.mean((2, 3), keepdim=True)))))
        y = self.c(y * s)
        return torch.relu(y + (x if self.proj is None else self.proj(x)))


class RegNet(nn.Module):
    def __init__(self, widths: tuple[int, ...] = (16, 32), depths: tuple[int, ...] = (1, 2), group_width: int = 8,
                 num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        blocks: list[nn.Module] = []
        c = 16
        for w, n in zip(widths, depths):
            for i in range(n):
                blocks.append(RegBlock(c, w, 2 if i == 0 else 1, group_width))
                c = w
        self.trunk = nn.Sequential(*blocks)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.fc(self.trunk(self.stem(x)).mean((2, 3)))


@register("regnet", "regnet", image(), covers=("grouped conv with group width", "SE gate", "residual add"))
def regnet() -> nn.Module:
    """A two-stage RegNetY-style model with group width 8."""
    return RegNet()
