"""Custom torch ops that no built-in rule describes (registered once per test session)."""

from __future__ import annotations

import torch


@torch.library.custom_op("prunec_test::twice", mutates_args=())
def twice(x: torch.Tensor) -> torch.Tensor:
    """Y = 2x: channel-preserving, but prunec cannot know that without a rule."""
    return x * 2


@twice.register_fake
def _twice_fake(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


@torch.library.custom_op("prunec_test::mix", mutates_args=())
def mix(x: torch.Tensor) -> torch.Tensor:
    """y[c] = x[c] + x[0]: reads channel 0 into every channel."""
    return x + x[:, :1]


@mix.register_fake
def _mix_fake(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)
