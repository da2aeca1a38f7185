"""ShuffleNetV2: channel split (chunk), two branches, concat and channel shuffle."""

from __future__ import annotations

import torch
from torch import nn

from prunec.zoo.registry import image, register


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    b, c, h, w = x.shape
    x = x.view(b, groups, c // groups, h, w).transpose(1, 2).contiguous()
    return x.view(b, c, h, w)


class ShuffleUnit(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        branch = cout // 2
        if stride > 1:
            self.branch1 = nn.Sequential(
                nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
                nn.Conv2d(cin, branch, 1, bias=False), nn.BatchNorm2d(branch), nn.ReLU())
        cin2 = cin if stride > 1 else branch
        self.branch2 = nn.Sequential(
            nn.Conv2d(cin2, branch, 1, bias=False), nn.BatchNorm2d(branch), nn.ReLU(),
            nn.Conv2d(branch, branch, 3, stride, 1, groups=branch, bias=False), nn.BatchNorm2d(branch),
            nn.Conv2d(branch, branch, 1, bias=False), nn.BatchNorm2d(branch), nn.ReLU())

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), 1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), 1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    def __init__(self, widths: tuple[int, ...] = (16, 32, 64), repeats: tuple[int, ...] = (2, 2),
                 num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        units: list[nn.Module] = []
        c = widths[0]
        for w, n in zip(widths[1:], repeats):
            units.append(ShuffleUnit(c, w, 2))
            units += [ShuffleUnit(w, w, 1) for _ in range(n - 1)]
            c = w
        self.stages = nn.Sequential(*units)
        self.head = nn.Sequential(nn.Conv2d(c, 96, 1, bias=False), nn.BatchNorm2d(96), nn.ReLU())
        self.fc = nn.Linear(96, num_classes)

    def forward(self, x):
        x = self.head(self.stages(self.stem(x)))
        return self.fc(x.mean([2, 3]))


@register("shufflenet_v2", "shufflenet", image(),
          covers=("chunk split", "concat", "channel shuffle view-transpose-view", "depthwise conv"))
def shufflenet_v2() -> nn.Module:
    """A narrow ShuffleNetV2."""
    return ShuffleNetV2()
