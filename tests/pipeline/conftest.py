"""Fixtures for the pass API tests: a traced tiny model, and registries restored after each test."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import prunec
from prunec.plugins import isolated_registries


class TinyNet(nn.Module):
    """conv(3->8) -> relu -> conv(8->6) -> relu -> conv(6->4): two prunable groups (8 and 6)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 6, 1)
        self.c = nn.Conv2d(6, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(torch.relu(self.b(torch.relu(self.a(x)))))


@pytest.fixture(autouse=True)
def _isolated():
    """Every test registers rules, passes and criteria freely; they are gone afterwards."""
    with isolated_registries():
        yield


@pytest.fixture(scope="module")
def tiny() -> tuple[nn.Module, torch.Tensor, prunec.Analysis]:
    """The tiny model, an input, and its analysis (traced once per module)."""
    torch.manual_seed(0)
    model, x = TinyNet().eval(), torch.randn(2, 3, 8, 8)
    return model, x, prunec.analyze(model, x)
