"""BN scale (network slimming): a channel matters as much as its norm layer's scale |gamma|."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from prunec.scoring import Criterion, SliceData, register_criterion

NORM_SCALES = frozenset({
    ("aten::batch_norm", "weight"),  # y[c] = gamma[c] * x_hat[c] + beta[c]
    ("aten::instance_norm", "weight"),
    ("aten::group_norm", "weight"),
    ("aten::layer_norm", "weight"),
    ("aten::native_batch_norm", "weight"),
    ("aten::_native_batch_norm_legit_no_training", "weight"),
})
"""(op key, port) pairs whose parameter is a per-channel scale applied after normalization."""


@register_criterion("bn-scale")
@dataclass(frozen=True)
class BNScale(Criterion):
    """Score channel c by |gamma[c]| of the norm layers in its group (Liu et al., 2017).

    Groups without a norm scale (a linear layer feeding a linear layer) fall back to L2 magnitude.
    """

    fallback: ClassVar[str | None] = "l2"

    def score_slice(self, data: SliceData) -> torch.Tensor | None:
        if not any(use in NORM_SCALES for use in data.uses):
            return None
        return data.weight.abs().sum(dim=1)
