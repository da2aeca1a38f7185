"""ConvNeXt block: depthwise 7x7, channels-last LayerNorm via permute, MLP, layer-scale gamma."""

from __future__ import annotations

import torch
from torch import nn

from prunec.zoo.registry import image, register


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over channels of an NCHW tensor (permute, normalize, permute back)."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 0.5))

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(nn.functional.gelu(self.pwconv1(self.norm(y))))
        y = (self.gamma * y).permute(0, 3, 1, 2)
        return x + y


class ConvNeXt(nn.Module):
    def __init__(self, dims: tuple[int, ...] = (16, 32), depths: tuple[int, ...] = (1, 2), num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, dims[0], 4, 4), LayerNorm2d(dims[0], eps=1e-6))
        stages: list[nn.Module] = []
        for i, (d, n) in enumerate(zip(dims, depths)):
            if i > 0:
                stages += [LayerNorm2d(dims[i - 1], eps=1e-6), nn.Conv2d(dims[i - 1], d, 2, 2)]
            stages += [ConvNeXtBlock(d) for _ in range(n)]
        self.stages = nn.Sequential(*stages)
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x):
        x = self.stages(self.stem(x))
        return self.head(self.norm(x.mean((2, 3))))


@register("convnext", "convnext", image(),
          covers=("channels-last LayerNorm", "permute", "layer-scale parameter", "depthwise 7x7"))
def convnext() -> nn.Module:
    """A two-stage ConvNeXt."""
    return ConvNeXt()
