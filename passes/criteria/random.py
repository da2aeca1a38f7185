"""Random scores: the baseline every other criterion has to beat."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from prunec.analysis.groups import Group
from prunec.scoring import Criterion, SliceData, register_criterion


@register_criterion("random")
@dataclass(frozen=True)
class Random(Criterion):
    """Score every channel uniformly at random (reproducible per `seed` and group id)."""

    seed: int = 0

    def score_slice(self, data: SliceData) -> torch.Tensor:
        return torch.ones(data.weight.shape[0])

    def score_group(self, group: Group, member_scores: list[np.ndarray]) -> np.ndarray:
        rng = np.random.default_rng([self.seed, group.id])
        return rng.random(group.channel_count) + 1e-3
