"""ZOO: name -> ZooEntry(build, example_inputs). Each family registers its models in its own file."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class ZooEntry:
    """A reference architecture: how to build it and what to feed it."""

    name: str
    family: str
    build: Callable[[], nn.Module]
    example_inputs: Callable[[], Any]
    """Returns a tensor, a tuple of tensors or a dict of keyword tensors."""
    covers: tuple[str, ...] = field(default=())
    """Structures the model exercises (for docs and test ids)."""
    same_class: bool = True
    """Whether prunec is expected to return the pruned model as its own class (else a GraphModule)."""


ZOO: dict[str, ZooEntry] = {}


def register(name: str, family: str, example: Callable[[], Any], covers: tuple[str, ...] = (),
             same_class: bool = True) -> Callable[[Callable[[], nn.Module]], Callable[[], nn.Module]]:
    """Decorator for a builder function: add it to ZOO."""
    def wrap(build: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        if name in ZOO:
            raise ValueError(f"zoo model {name!r} registered twice")
        ZOO[name] = ZooEntry(name, family, _seeded(build), example, covers, same_class)
        return build
    return wrap


def _seeded(build: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        torch.manual_seed(0)
        model = build()
        randomize_norms(model)
        return model.eval()
    make.__doc__ = build.__doc__
    return make


def randomize_norms(model: nn.Module, seed: int = 0) -> None:
    """Give norm layers non-trivial affine parameters and running statistics, so that a wrong
    slice of them changes the output (default init, weight 1 and bias 0, would hide it)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)):
                if getattr(m, "weight", None) is not None:
                    m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                if getattr(m, "bias", None) is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
            if isinstance(m, nn.modules.batchnorm._NormBase) and m.running_mean is not None:
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)


def image(batch: int = 2, channels: int = 3, size: int = 32) -> Callable[[], torch.Tensor]:
    """An example-input factory for images."""
    def make() -> torch.Tensor:
        return torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(1))
    return make
