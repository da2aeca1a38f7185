"""LAMP: layer-adaptive magnitude scores that compare across layers (Lee et al., 2021)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from prunec.analysis.groups import Group
from prunec.scoring import Criterion, SliceData, register_criterion


def lamp_scores(energy: torch.Tensor) -> torch.Tensor:
    """LAMP of each entry: its energy over the total energy of the entries at least as large.

    The largest entry scores 1; an entry far smaller than the ones above it scores near 0.
    """
    order = torch.argsort(energy, stable=True)
    sorted_e = energy[order]
    tail = torch.flip(torch.cumsum(torch.flip(sorted_e, [0]), 0), [0])
    out = torch.empty_like(energy)
    out[order] = sorted_e / tail.clamp_min(torch.finfo(energy.dtype).tiny)
    return out


@register_criterion("lamp")
@dataclass(frozen=True)
class LAMP(Criterion):
    """Score channel c by the LAMP score of its squared L2 norm within each member, summed.

    LAMP scores are already normalized per member (the largest row scores 1), so groups share one
    scale and a global ranking can compare them directly.
    """

    scale: ClassVar[str] = "absolute"

    def score_slice(self, data: SliceData) -> torch.Tensor:
        return lamp_scores(data.weight.double().pow(2).sum(dim=1))

    def score_group(self, group: Group, member_scores: list[np.ndarray]) -> np.ndarray:
        return np.sum(member_scores, axis=0) / len(member_scores)
