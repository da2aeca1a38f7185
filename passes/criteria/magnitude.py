"""Magnitude criteria: the Lp norm of each channel's weights (L1, L2)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from prunec.scoring import Criterion, SliceData, register_criterion


@register_criterion("magnitude")
@dataclass(frozen=True)
class Magnitude(Criterion):
    """Score channel c by the Lp norm of its slice of each parameter in the group."""

    p: float = 2.0

    def score_slice(self, data: SliceData) -> torch.Tensor:
        return data.weight.flatten(1).norm(p=self.p, dim=1)


@register_criterion("l2")
@dataclass(frozen=True)
class L2(Magnitude):
    """L2 norm of each channel's weights."""

    p: float = 2.0


@register_criterion("l1")
@dataclass(frozen=True)
class L1(Magnitude):
    """L1 norm of each channel's weights."""

    p: float = 1.0
