"""Small models and data for the optimizer tests."""

from __future__ import annotations

import io

import torch
from torch import nn


class TinyConvNet(nn.Module):
    """conv-BN-ReLU x2, mean pool, linear: conv2.weight holds rows of one group, columns of another."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 12, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(12)
        self.fc = nn.Linear(12, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


def tiny_conv(seed: int = 0) -> TinyConvNet:
    """A seeded TinyConvNet in train mode."""
    torch.manual_seed(seed)
    return TinyConvNet().train()


def mlp(seed: int = 0, width: int = 16) -> nn.Sequential:
    """A seeded 8 -> width -> width -> 4 MLP."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, 4))


def image_batch(step: int, n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """A deterministic (images, labels) batch for `step`: labels depend on the image's channel means."""
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(n, 3, 6, 6, generator=g)
    y = (x.mean((2, 3)) @ torch.tensor([1.0, -1.0, 0.5]) > 0).long() + 2 * (x[:, 0].mean((1, 2)) > 0).long()
    return x, y


def conv_loss(model: nn.Module, step: int) -> torch.Tensor:
    """Cross-entropy of `model` on `image_batch(step)`."""
    x, y = image_batch(step)
    return nn.functional.cross_entropy(model(x), y)


def vector_batch(step: int, n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """A deterministic regression batch: the target depends on inputs 0-3 only."""
    g = torch.Generator().manual_seed(2000 + step)
    x = torch.randn(n, 8, generator=g)
    y = torch.stack([x[:, 0] - x[:, 1], x[:, 2] * 0.5, x[:, 3], x[:, 0] + x[:, 3]], 1)
    return x, y


def mlp_loss(model: nn.Module, step: int) -> torch.Tensor:
    """Mean squared error of `model` on `vector_batch(step)`."""
    x, y = vector_batch(step)
    return ((model(x) - y) ** 2).mean()


def train(model: nn.Module, opt: torch.optim.Optimizer, loss_fn, steps: range) -> list[float]:
    """Plain loop over the given step numbers; returns the losses."""
    losses = []
    for step in steps:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model, step)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def through_disk(obj):
    """`obj` after torch.save and torch.load (weights_only, the default), as a checkpoint would be."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer)
