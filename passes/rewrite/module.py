"""Rewrite pass: slice the working nn.Module in place and fix its size attributes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from prunec.pipeline import Artifact, Pass, PassResult, PruneState, register_pass
from prunec.rewrite import rewrite_module


@register_pass("rewrite-module")
@dataclass(frozen=True)
class RewriteModulePass(Pass):
    """Produce the pruned model as the same classes as the original."""

    requires: ClassVar = frozenset({Artifact.ANALYSIS, Artifact.MASKS})
    provides: ClassVar = frozenset({Artifact.PRUNED})

    def run(self, state: PruneState) -> PassResult:
        analysis, masks = state.analysis, state.masks
        assert analysis is not None and masks is not None  # guaranteed by `requires`
        record = rewrite_module(state.model, analysis, analysis.keep_mask(masks))
        new = state.replace(pruned=state.model, output_kind="module")
        for text in dict.fromkeys(record.notes):
            new = new.note(text)
        return PassResult(new, changed=bool(record.sliced))
