"""Rewrite pass: emit the pruned model as a torch.fx.GraphModule of the traced program."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from prunec.pipeline import Artifact, Pass, PassResult, PruneState, register_pass
from prunec.rewrite import rewrite_graph_module


@register_pass("rewrite-graph-module")
@dataclass(frozen=True)
class RewriteGraphModulePass(Pass):
    """Produce the pruned model as a GraphModule (works where module code hard-codes sizes)."""

    requires: ClassVar = frozenset({Artifact.ANALYSIS, Artifact.MASKS})
    provides: ClassVar = frozenset({Artifact.PRUNED})

    def run(self, state: PruneState) -> PassResult:
        analysis, masks = state.analysis, state.masks
        assert analysis is not None and masks is not None  # guaranteed by `requires`
        gm = rewrite_graph_module(analysis, analysis.keep_mask(masks))
        return PassResult(state.replace(pruned=gm, output_kind="graph_module"))
