"""Activation-weighted magnitude: |weight| x input activation norm (the Wanda / CFSP family)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from prunec.scoring import Criterion, Need, SliceData, register_criterion


@register_criterion("activation")
@dataclass(frozen=True)
class Activation(Criterion):
    """Score channel c by ||W[:, c]|| * ||x_c|| summed over the layers that read channel c.

    `x_c` is the calibration RMS of the incoming channel c at each consuming op, so a channel that
    carries almost nothing on real data scores low however large its weights are. Members that do
    not weigh an incoming channel (producer rows, norm scales) do not vote; a group with no such
    member falls back to L2 magnitude.
    """

    needs: ClassVar = frozenset({Need.ACTIVATIONS})
    fallback: ClassVar[str | None] = "l2"

    def score_slice(self, data: SliceData) -> torch.Tensor | None:
        if data.activation is None:
            return None
        return data.weight.norm(dim=1) * data.activation.to(data.weight.device)
