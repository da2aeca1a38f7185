"""Rewrite the traced program into a pruned torch.fx.GraphModule.

Works for any model prunec can trace, including ones whose Python code hard-codes sizes: the ATen
graph is edited directly (sliced state, resized size arguments), so no module attribute is needed.
The GraphModule is specialised to the example input shapes.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from prunec.analysis.result import Analysis
from prunec.rewrite.resize import ResizeContext, resize_call
from prunec.rewrite.slicing import get_state, set_state, slice_tensor


def _kept_fn(analysis: Analysis, keep: np.ndarray):  # noqa: ANN202 - small closure
    def kept(value: str, axis: int) -> np.ndarray:
        return analysis.kept_indices(keep, value, axis)
    return kept


def rewrite_graph_module(analysis: Analysis, keep: np.ndarray) -> torch.fx.GraphModule:
    """A new GraphModule computing the pruned model (the analysed model is not modified)."""
    traced = analysis.source
    gm = copy.deepcopy(traced.exported.module())
    changes = analysis.state_changes(keep)
    with torch.no_grad():
        for name, kept in changes.items():
            old = get_state(gm, name)
            new = slice_tensor(old, kept)
            if isinstance(old, nn.Parameter):
                new = nn.Parameter(new, requires_grad=old.requires_grad)
            for alias in analysis.aliases(name):
                try:
                    set_state(gm, alias, new)
                except AttributeError:
                    continue
    resize_graph_nodes(gm.graph, analysis, keep)
    gm.recompile()
    return gm


def resize_graph_nodes(fx_graph: torch.fx.Graph, analysis: Analysis, keep: np.ndarray) -> None:
    """Rewrite size arguments of every fx node whose IR op has a resizer."""
    shapes = analysis.new_shapes(keep)
    kept = _kept_fn(analysis, keep)
    graph = analysis.graph
    for node in fx_graph.nodes:
        if node.op != "call_function" or not graph.has_op(node.name):
            continue
        op = graph.op(node.name)
        ctx = ResizeContext(graph, op, shapes, kept)
        target, args, kwargs = resize_call(op, node.target, tuple(node.args), dict(node.kwargs), ctx)
        node.target, node.args, node.kwargs = target, args, kwargs
