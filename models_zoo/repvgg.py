"""RepVGG-style block: 3x3+BN, 1x1+BN and identity-BN branches summed (training-time form)."""

from __future__ import annotations

from torch import nn

from prunec.zoo.registry import image, register


class RepVGGBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.dense = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout))
        self.one = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.identity = nn.BatchNorm2d(cin) if cin == cout and stride == 1 else None
        self.act = nn.ReLU()

    def forward(self, x):
        y = self.dense(x) + self.one(x)
        if self.identity is not None:
            y = y + self.identity(x)
        return self.act(y)


class RepVGG(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.blocks = nn.Sequential(RepVGGBlock(3, 16, 2), RepVGGBlock(16, 16), RepVGGBlock(16, 32, 2),
                                    RepVGGBlock(32, 32))
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        return self.fc(nn.functional.adaptive_avg_pool2d(self.blocks(x), 1).flatten(1))


@register("repvgg", "repvgg", image(), covers=("parallel branches summed", "identity BN branch"))
def repvgg() -> nn.Module:
    """Four RepVGG blocks."""
    return RepVGG()
