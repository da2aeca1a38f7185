"""prunec-demo-plugin: teaches prunec one custom op and adds a criterion and a selection pass.

Importing this module registers everything; prunec imports it through the entry point
`demo = "prunec_demo_plugin"` in the "prunec.plugins" group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

import prunec
from prunec.pipeline import Artifact, Pass, PassResult, PruneState
from prunec.rules import OpView, RuleResult, couple
from prunec.scoring import Criterion, SliceData
from prunec.selection import finalize, lowest


@torch.library.custom_op("prunec_demo::channel_affine", mutates_args=())
def channel_affine(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """y[:, c] = x[:, c] * scale[c] + shift[c] (a fused per-channel affine, as a custom op)."""
    view = (1, -1) + (1,) * (x.dim() - 2)
    return x * scale.view(view) + shift.view(view)


@channel_affine.register_fake
def _(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


@prunec.op_rule("prunec_demo::channel_affine")
def channel_affine_rule(node: OpView) -> RuleResult:
    """Every axis passes through; channel c is scaled by scale[c] and shifted by shift[c]."""
    x, y = node.input("x"), node.output(0)
    facts = [couple(x.axis(k), y.axis(k)) for k in range(x.rank)]
    facts += [couple(y.channel, node.input("scale").axis(0)), couple(y.channel, node.input("shift").axis(0))]
    return facts


@prunec.register_criterion("demo-max-abs")
@dataclass(frozen=True)
class MaxAbs(Criterion):
    """Score a channel by the largest absolute weight in its slices."""

    def score_slice(self, data: SliceData) -> torch.Tensor:
        return data.weight.abs().amax(dim=1)


@prunec.register_pass("demo-drop-lowest")
@dataclass(frozen=True)
class DropLowest(Pass):
    """Remove the `count` lowest-scoring channels of every group (keeping each member non-empty)."""

    requires: ClassVar = frozenset({Artifact.ANALYSIS, Artifact.SCORES})
    provides: ClassVar = frozenset({Artifact.MASKS})

    count: int = 1

    def run(self, state: PruneState) -> PassResult:
        groups = {g.id: g for g in state.analysis.groups}
        removed = {gid: lowest(state.scores[gid], min(self.count, g.channel_count - 1))
                   for gid, g in groups.items()}
        return PassResult(state.replace(masks=finalize(groups, removed, state.scores)))
