"""The zero-groups pass: remove exactly the channels whose parameters are all exactly 0.0.

This is how a train-once model is compiled: the optimizer drove whole channels to zero, and for
zero-invariant groups removing a zero channel changes nothing, so the pruned model computes what
the trained one does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from prunec.analysis.result import Analysis
from prunec.pipeline import Artifact, Pass, PassResult, PruneState, register_pass
from prunec.selection import keep_every_member


def exact_zero_channels(model: nn.Module, analysis: Analysis) -> dict[int, tuple[int, ...]]:
    """Group id -> channels whose every parameter slice is exactly 0.0 (zero-invariant groups only).

    A layer is never emptied: if every channel of some member is zero, one channel is kept.
    """
    params = dict(model.named_parameters(remove_duplicate=False))
    out: dict[int, tuple[int, ...]] = {}
    for g in analysis.groups:
        if not g.zero_invariant:
            continue
        largest = np.zeros(g.channel_count)
        seen = False
        for member, chan in zip(g.members, g.channel_of, strict=True):
            p = params.get(member.param)
            if p is None:
                continue
            seen = True
            idx = torch.as_tensor(member.indices, dtype=torch.long, device=p.device)
            rows = p.detach().index_select(member.dim, idx).movedim(member.dim, 0).reshape(len(idx), -1)
            np.maximum.at(largest, np.asarray(chan), rows.abs().amax(1).double().cpu().numpy())
        zero = [int(c) for c in np.flatnonzero(largest == 0)] if seen else []
        if zero:
            kept = keep_every_member(g, zero, largest)
            if kept:
                out[g.id] = tuple(kept)
    return out


@register_pass("zero-groups")
@dataclass(frozen=True)
class ZeroGroupsPass(Pass):
    """Masks = the channels of zero-invariant groups whose parameters are all exactly zero."""

    requires: ClassVar = frozenset({Artifact.ANALYSIS})
    provides: ClassVar = frozenset({Artifact.MASKS})

    def run(self, state: PruneState) -> PassResult:
        analysis = state.analysis
        assert analysis is not None  # guaranteed by `requires`
        masks = exact_zero_channels(state.model, analysis)
        count = sum(len(c) for c in masks.values())
        new = state.replace(masks=masks).note(
            f"zero-groups: {count} exactly-zero channels in {len(masks)} groups")
        return PassResult(new, changed=bool(masks))
