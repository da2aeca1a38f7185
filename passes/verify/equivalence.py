"""Verification pass: the pruned model must match the zeroed original (the contract).

For groups that are not zero-invariant, the reference evaluates the ops that mix their channels on
the kept channels only. When a same-class module fails (its Python code hard-codes a size prunec
cannot see) and `fallback` is on, the pass switches to the GraphModule output and checks that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from prunec.errors import InputError
from prunec.pipeline import Artifact, Pass, PassResult, PruneState, register_pass
from prunec.reference import traced_reference
from prunec.rewrite import rewrite_graph_module
from prunec.verify import check_equivalent, raise_if_failed


@register_pass("verify")
@dataclass(frozen=True)
class VerifyPass(Pass):
    """Compare the pruned model with the reference on the example and `seeds` random inputs."""

    requires: ClassVar = frozenset({Artifact.ANALYSIS, Artifact.MASKS, Artifact.PRUNED})
    provides: ClassVar = frozenset({Artifact.VERIFIED})
    modifies: ClassVar = frozenset({Artifact.PRUNED})
    """On fallback, the pruned module is replaced by the pruned GraphModule."""

    seeds: int = 2
    tolerance: float | None = None
    fallback: bool = True

    def run(self, state: PruneState) -> PassResult:
        analysis, masks, pruned = state.analysis, state.masks, state.pruned
        assert analysis is not None and masks is not None and pruned is not None  # `requires`
        if any(t.device.type == "meta" for t in state.inputs.tensors()) or any(
                p.device.type == "meta" for p in pruned.parameters()):
            raise InputError("cannot verify a model on the meta device (it holds no values); pass "
                             "verify=False, or load real weights first")
        tol = self.tolerance if self.tolerance is not None else state.tolerance
        keep = analysis.keep_mask(masks)
        removed = [analysis.group(gid).select(ch) for gid, ch in masks.items() if ch]
        reference, ref_name = traced_reference(analysis, keep, removed)
        inputs = [state.inputs] + [state.inputs.randomized(s + 1) for s in range(self.seeds)]
        report = check_equivalent(pruned, reference, inputs, reference_name=ref_name, tolerance=tol)
        new = state
        if not report.passed and self.fallback and state.output_kind == "module":
            first = report
            gm = rewrite_graph_module(analysis, keep)
            report = check_equivalent(gm, reference, inputs, reference_name=ref_name, tolerance=tol)
            if report.passed:
                new = state.replace(pruned=gm, output_kind="graph_module").note(
                    f"same-class module failed verification ({first.worst_output}: "
                    f"{first.detail or f'rel. diff {first.max_relative_diff:.3g}'}); returned the pruned "
                    "GraphModule instead")
        raise_if_failed(report, f"the pruned {new.output_kind}")
        return PassResult(new.replace(verification=report), changed=False)
