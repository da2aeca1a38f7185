"""Diagonal Hessian (OBD) with the empirical Fisher: second-order saliency of a channel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from prunec.analysis.groups import Group
from prunec.scoring import Criterion, Need, SliceData, register_criterion


@register_criterion("hessian")
@dataclass(frozen=True)
class Hessian(Criterion):
    """Score channel c by 1/2 * sum of w^2 * H_ii over its member entries (Optimal Brain Damage).

    The Hessian diagonal is estimated by the empirical Fisher, the squared gradient of each
    calibration batch (E[g^2]), so the score is the second-order loss increase of zeroing the
    channel when the first-order term vanishes at a trained minimum.
    """

    needs: ClassVar = frozenset({Need.GRADIENTS})
    scale: ClassVar[str] = "absolute"

    def score_slice(self, data: SliceData) -> torch.Tensor | None:
        if data.grad_sq is None:
            return None
        return 0.5 * (data.weight.pow(2) * data.grad_sq).sum(dim=1)

    def score_group(self, group: Group, member_scores: list[np.ndarray]) -> np.ndarray:
        return np.sum(member_scores, axis=0)
