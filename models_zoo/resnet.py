"""ResNets (basic and bottleneck blocks), ResNeXt (grouped 3x3) and an SE-ResNet block."""

from __future__ import annotations

import torch
from torch import nn

from prunec.zoo.registry import image, register


class SqueezeExcite(nn.Module):
    """x * sigmoid(fc2(relu(fc1(mean(x))))) — channel gates coupled with the gated tensor."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, max(4, channels // reduction), 1)
        self.fc2 = nn.Conv2d(max(4, channels // reduction), channels, 1)

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, se: bool = False, **_: object) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.se = SqueezeExcite(planes) if se else nn.Identity()
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, se: bool = False, groups: int = 1,
                 width_per_group: int = 0) -> None:
        super().__init__()
        width = planes if not width_per_group else groups * width_per_group
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.se = SqueezeExcite(out) if se else nn.Identity()
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != out:
            self.downsample = nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.se(self.bn3(self.conv3(out)))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """A small ResNet for 32x32 inputs."""

    def __init__(self, block: type, layers: tuple[int, ...], widths: tuple[int, ...] = (16, 32, 64),
                 num_classes: int = 10, **block_kwargs: object) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        cin = widths[0]
        stages = []
        for i, (n, w) in enumerate(zip(layers, widths)):
            blocks = []
            for j in range(n):
                blocks.append(block(cin, w, 2 if (j == 0 and i > 0) else 1, **block_kwargs))
                cin = w * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layers = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layers(x)
        return self.fc(torch.flatten(self.pool(x), 1))


@register("resnet_basic", "resnet", image(), covers=("residual add", "downsample shortcut", "inplace add"))
def resnet_basic() -> nn.Module:
    """ResNet with basic blocks (2-2-2)."""
    return ResNet(BasicBlock, (2, 2, 2))


@register("resnet_bottleneck", "resnet", image(), covers=("bottleneck", "residual add"))
def resnet_bottleneck() -> nn.Module:
    """ResNet with bottleneck blocks (1-2-1)."""
    return ResNet(Bottleneck, (1, 2, 1), widths=(8, 16, 32))


@register("resnext", "resnet", image(), covers=("grouped conv", "residual add"))
def resnext() -> nn.Module:
    """ResNeXt: bottlenecks with a grouped 3x3 (4 groups x 4 channels)."""
    return ResNet(Bottleneck, (1, 1, 1), widths=(8, 16, 32), groups=4, width_per_group=4)


@register("se_resnet", "resnet", image(), covers=("squeeze-excitation gate", "residual add"))
def se_resnet() -> nn.Module:
    """ResNet with basic blocks and squeeze-excitation gates."""
    return ResNet(BasicBlock, (1, 1, 1), se=True)
