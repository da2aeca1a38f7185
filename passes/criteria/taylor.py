"""First-order Taylor: the loss change a channel's removal causes, to first order (Molchanov 2019)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from prunec.analysis.groups import Group
from prunec.scoring import Criterion, Need, SliceData, register_criterion


@register_criterion("taylor")
@dataclass(frozen=True)
class Taylor(Criterion):
    """Score channel c by |sum of w * dL/dw over all its member entries|, per batch, summed.

    Zeroing every slice of the channel changes the loss by about -sum(w * g): the members are
    added with their signs before the absolute value, so the estimate is the channel's, not a sum
    of per-layer guesses. Taking it per batch keeps batches with opposite signs from cancelling.
    """

    needs: ClassVar = frozenset({Need.GRADIENTS})
    scale: ClassVar[str] = "absolute"

    def score_slice(self, data: SliceData) -> torch.Tensor | None:
        if data.grad is None:
            return None
        return (data.weight * data.grad).sum(dim=1)

    def score_group(self, group: Group, member_scores: list[np.ndarray]) -> np.ndarray:
        return np.abs(np.sum(member_scores, axis=0))
