"""The public surface: the prunec modules that passes, plugins and user code may import.

Everything else (frontends, the coupling solver, atom tables, rewrite internals, the CLI) is
internal and may change. The built-in passes in `passes/` are written against this surface only,
with no `_private` names; `tests/test_public_api.py` checks that, and the example plugin too.
"""

from __future__ import annotations

PUBLIC_MODULES: frozenset[str] = frozenset({
    "prunec",                   # the curated names in prunec.__all__
    "prunec.errors",            # every exception class
    "prunec.pipeline",          # PruneState, Pass, PassResult, PassManager, register_pass, pipelines
    "prunec.scoring",           # Criterion, SliceData, Need, register_criterion, ScoreGroupsPass
    "prunec.rules",             # op_rule, couple/pin/reduces/free/alternatives/decline, OpView, families
    "prunec.selection",         # turning scores into removals that leave a valid model
    "prunec.allocation",        # landing a selection family on a MACs/params/latency target
    "prunec.activations",       # taps on the traced program: inputs of chosen ops on calibration data
    "prunec.latency",           # per-op latency tables, LatencyModel, latency targets
    "prunec.schedule",          # iterative pruning, recalibrate_norms
    "prunec.targets",           # Target
    "prunec.analysis.result",   # Analysis
    "prunec.analysis.groups",   # Group, Slice, RemovedGroup, PinnedParam
    "prunec.analysis.cost",     # MAC and parameter counts of a graph, before and after
    "prunec.ir.graph",          # Graph, OpNode, Value, ValueKind (read-only use)
    "prunec.ir.slots",          # Slot and channel maps
    "prunec.ir.printer",        # stable text of graphs and analyses
    "prunec.ir.draw",           # pictures of groups
    "prunec.rewrite",           # rewrite_module, rewrite_graph_module
    "prunec.reference",         # zeroed_copy, traced_reference
    "prunec.verify",            # check_equivalent, VerificationReport
    "prunec.report",            # PruneReport
    "prunec.inputs",            # ExampleInputs
    "prunec.plugins",           # load_plugins, extensions, isolated_registries
    "prunec.explain",           # explain
    "prunec.zoo",               # reference models
    "prunec.onnx_api",          # analyze/prune for ONNX files, OnnxPruneResult
    "prunec.persistence",       # save/load of pruned models, read_plan, PLAN_VERSION
    "prunec.progress",          # ProgressEvent (what progress callbacks receive)
})
"""Importable by passes and plugins; `prunec.passes.*` may also import each other."""


def is_public(module: str) -> bool:
    """Whether `module` is part of the public surface (the built-in passes count as public)."""
    return module in PUBLIC_MODULES or module == "prunec.passes" or module.startswith("prunec.passes.")
