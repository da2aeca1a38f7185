"""Building blocks for rule-soundness cases: a producer, the op under test, a consumer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn


class Sandwich(nn.Module):
    """y = b(fn(a(x))): `a` makes the channels, `fn` is the op under test, `b` reads them."""

    def __init__(self, a: nn.Module, fn: Callable[..., Any] | nn.Module, b: nn.Module) -> None:
        super().__init__()
        self.a = a
        self.b = b
        if isinstance(fn, nn.Module):
            self.op = fn
        else:
            self._fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x)
        h = self.op(h) if hasattr(self, "op") else self._fn(h)
        return self.b(h)


class Fn(nn.Module):
    """A module around a function that may use this module's own parameters: fn(self, x)."""

    def __init__(self, fn: Callable[..., Any], **params: torch.Tensor) -> None:
        super().__init__()
        self._fn = fn
        for name, value in params.items():
            self.register_parameter(name, nn.Parameter(value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fn(self, x)


def conv_sandwich(
    fn: Callable[..., Any] | nn.Module, c: int = 8, out: int | None = None, dims: int = 2, cin: int = 3
) -> Sandwich:
    """Conv (cin -> c) -> fn -> conv (out or c -> 5)."""
    conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims]
    return Sandwich(conv(cin, c, 3, padding=1), fn, conv(out or c, 5, 1))


def linear_sandwich(
    fn: Callable[..., Any] | nn.Module, c: int = 8, out: int | None = None, cin: int = 6
) -> Sandwich:
    """Linear (cin -> c) -> fn -> linear (out or c -> 5)."""
    return Sandwich(nn.Linear(cin, c), fn, nn.Linear(out or c, 5))


def image(n: int = 2, c: int = 3, side: int = 8, dims: int = 2) -> Callable[[], torch.Tensor]:
    """A random image batch (dims spatial axes)."""
    return lambda: torch.randn(n, c, *([side] * dims))


def tokens(n: int = 2, t: int = 5, c: int = 6) -> Callable[[], torch.Tensor]:
    """A random (batch, tokens, features) tensor."""
    return lambda: torch.randn(n, t, c)


def vectors(n: int = 3, c: int = 6) -> Callable[[], torch.Tensor]:
    """A random (batch, features) tensor."""
    return lambda: torch.randn(n, c)


class Fork(nn.Module):
    """y = b(fn(a1(x), a2(x), ...)): several producers meet in the op under test."""

    def __init__(self, fn: Callable[..., Any], *branches: nn.Module, b: nn.Module) -> None:
        super().__init__()
        self._fn = fn
        self._names = [f"a{i + 1}" for i in range(len(branches))]
        for name, m in zip(self._names, branches, strict=True):
            self.add_module(name, m)
        self.b = b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self._fn(*(getattr(self, n)(x) for n in self._names)))
