"""UNet: encoder/decoder with transposed convolutions and skip concatenations."""

from __future__ import annotations

import torch
from torch import nn

from prunec.zoo.registry import image, register


def double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UNet(nn.Module):
    def __init__(self, cin: int = 3, classes: int = 2, base: int = 8) -> None:
        super().__init__()
        self.inc = double_conv(cin, base)
        self.down1 = nn.Sequential(nn.MaxPool2d(2), double_conv(base, base * 2))
        self.down2 = nn.Sequential(nn.MaxPool2d(2), double_conv(base * 2, base * 4))
        self.up1 = nn.ConvTranspose2d(base * 4, base * 2, 2, stride=2)
        self.conv1 = double_conv(base * 4, base * 2)
        self.up2 = nn.ConvTranspose2d(base * 2, base, 2, stride=2)
        self.conv2 = double_conv(base * 2, base)
        self.out = nn.Conv2d(base, classes, 1)

    def forward(self, x):
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        y = self.conv1(torch.cat([x2, self.up1(x3)], dim=1))
        y = self.conv2(torch.cat([x1, self.up2(y)], dim=1))
        return self.out(y)


@register("unet", "unet", image(size=32), covers=("conv transpose", "skip concat", "segmentation output"))
def unet() -> nn.Module:
    """A two-level UNet."""
    return UNet()
