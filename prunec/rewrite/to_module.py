"""Rewrite an nn.Module in place into its pruned form: slice state, then fix size attributes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from prunec.analysis.result import Analysis
from prunec.rewrite.module_fixers import MODEL_FIXERS, ModuleContext, fixer_for
from prunec.rewrite.slicing import get_state, set_state, slice_tensor


@dataclass
class ModuleRewrite:
    """What the module rewrite did."""

    sliced: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    """state_dict name -> (old shape, new shape)."""
    fixed: list[str] = field(default_factory=list)
    """Modules whose size attributes were updated."""
    unfixed: list[str] = field(default_factory=list)
    """Modules whose state changed but whose class has no fixer (its forward may use stale sizes)."""
    notes: list[str] = field(default_factory=list)
    """What fixers reported (sizes they could not update, configs that cannot represent the result)."""


def rewrite_module(model: nn.Module, analysis: Analysis, keep: np.ndarray) -> ModuleRewrite:
    """Slice every parameter/buffer that loses channels and update module size attributes.

    `model` is modified in place (pass a copy to keep the original). Tied weights stay tied.
    """
    record = ModuleRewrite()
    changes = analysis.state_changes(keep)
    touched: set[str] = set()
    with torch.no_grad():
        for name, kept in changes.items():
            old = get_state(model, name)
            new = slice_tensor(old, kept)
            if isinstance(old, nn.Parameter):
                new = nn.Parameter(new, requires_grad=old.requires_grad)
            for alias in analysis.aliases(name):
                set_state(model, alias, new)
                touched.add(alias.rpartition(".")[0])
            record.sliced[name] = (tuple(old.shape), tuple(new.shape))
    shapes = analysis.new_shapes(keep)
    ops_by_origin: dict[str, list] = {}
    for op in analysis.graph.ops():
        ops_by_origin.setdefault(op.origin or "", []).append(op)  # no origin: run by the root module
    # modules without state whose ops change shape (LayerNorm without affine, Unflatten) need fixing too
    old_shapes = {v.name: v.shape for v in analysis.graph.values()}
    for path, ops in ops_by_origin.items():
        if any(shapes[v.name] != old_shapes[v.name] for op in ops for v in analysis.graph.outputs(op)):
            touched.add(path)
    for path in sorted(touched):
        try:
            module = model.get_submodule(path)
        except AttributeError:
            continue
        fixer = fixer_for(module)
        if fixer is None:
            if list(module.parameters(recurse=False)) or list(module.buffers(recurse=False)):
                record.unfixed.append(path or type(module).__name__)
            continue
        fixer(module, ModuleContext(analysis.graph, path, shapes, ops_by_origin, record.notes))
        record.fixed.append(path)
    for model_fixer in MODEL_FIXERS:
        model_fixer(model, ModuleContext(analysis.graph, "", shapes, ops_by_origin, record.notes))
    return record
