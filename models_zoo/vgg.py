"""VGG with batch norm: a plain conv stack and a flatten -> linear classifier."""

from __future__ import annotations

from torch import nn

from prunec.zoo.registry import image, register


class VGG(nn.Module):
    """Conv-BN-ReLU blocks with max pooling, then flatten (C*H*W) into linear layers."""

    def __init__(self, widths: tuple = (16, "M", 32, "M", 64, 64, "M"), num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for w in widths:
            if w == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            layers += [nn.Conv2d(c, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            c = w
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(c * 4 * 4, 64), nn.ReLU(), nn.Dropout(0.1),
                                        nn.Linear(64, num_classes))

    def forward(self, x):
        x = self.features(x)
        x = x.view(x.size(0), -1)
        return self.classifier(x)


@register("vgg_bn", "vgg", image(), covers=("conv", "batchnorm", "flatten->linear", "dropout"))
def vgg_bn() -> nn.Module:
    """VGG-style conv stack with BN and a two-layer classifier."""
    return VGG()
