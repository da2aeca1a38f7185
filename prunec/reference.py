"""References a pruned model is checked against.

- `zeroed_copy`: the correctness contract itself. A copy of the original model with every removed
  member slice set to zero. For zero-invariant groups it computes exactly what the pruned model must.
- `removal_reference`: for groups that are not zero-invariant (a LayerNorm, a mean or a contraction
  mixes their channels), the zeroed traced program in which each such mixing op is evaluated on
  the kept channels only and its result put back in place: removal computed in closed form at the
  ops where it differs from zeroing, and the plain zeroed program everywhere else.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from prunec.analysis.groups import RemovedGroup
from prunec.analysis.result import Analysis
from prunec.ir.graph import OpNode
from prunec.rewrite.resize import Args, ResizeContext, resize_call


def zeroed_copy(model: nn.Module, removed: Sequence[RemovedGroup]) -> nn.Module:
    """A deep copy of `model` with every member slice of every removed group set to zero."""
    ref = copy.deepcopy(model)
    state = ref.state_dict()
    with torch.no_grad():
        for group in removed:
            for s in group.members:
                t = state[s.param]
                t.index_fill_(s.dim, torch.as_tensor(s.indices, dtype=torch.long, device=t.device), 0)
    return ref


class _RemovalAt:
    """Evaluate one op on the kept channels only, then scatter its outputs back to full size."""

    def __init__(self, target: Any, op: OpNode, analysis: Analysis, keep: np.ndarray,
                 shapes: dict[str, tuple[int, ...]]) -> None:
        self.target = target
        self.op = op
        # fx code generation names the callable
        self.__name__ = f"removal_at_{op.name}"
        self.__qualname__ = self.__name__
        graph = analysis.graph
        self.inputs = [(port, analysis.removed_axes(keep, v.name)) for port, v in graph.inputs(op)]
        self.outputs = [(v.shape, analysis.removed_axes(keep, v.name)) for v in graph.outputs(op)]
        self.ctx = ResizeContext(graph, op, shapes, lambda v, k: analysis.kept_indices(keep, v, k))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        a = Args(self.target, args, kwargs)
        for port, kept in self.inputs:
            if not kept:
                continue
            name, _, j = port.partition(".")
            value = a.get(name)
            if j:
                items = list(value)
                items[int(j)] = _gather(items[int(j)], kept)
                a.set(name, items)
            else:
                a.set(name, _gather(value, kept))
        target, new_args, new_kwargs = resize_call(self.op, a.target, tuple(a.args), a.kwargs, self.ctx)
        out = target(*new_args, **new_kwargs)
        if isinstance(out, (tuple, list)):
            return type(out)(_scatter(o, *self.outputs[i]) if i < len(self.outputs) else o
                             for i, o in enumerate(out))
        return _scatter(out, *self.outputs[0])


def _gather(t: torch.Tensor, kept: dict[int, np.ndarray]) -> torch.Tensor:
    for axis, idx in sorted(kept.items()):
        t = t.index_select(axis, torch.as_tensor(idx, dtype=torch.long, device=t.device))
    return t


def _scatter(t: Any, shape: tuple[int, ...], kept: dict[int, np.ndarray]) -> Any:
    if not isinstance(t, torch.Tensor) or not kept:
        return t
    full = t.new_zeros(shape)
    index = []
    for axis in range(len(shape)):
        idx = kept.get(axis)
        idx_t = torch.as_tensor(idx if idx is not None else np.arange(shape[axis]), dtype=torch.long,
                                device=t.device)
        view = [1] * len(shape)
        view[axis] = -1
        index.append(idx_t.view(view))
    full[tuple(index)] = t
    return full


def traced_reference(analysis: Analysis, keep: np.ndarray, removed: Sequence[RemovedGroup]
                     ) -> tuple[torch.fx.GraphModule, str]:
    """The traced original with removed member slices zeroed (the contract), plus removal
    semantics at channel-mixing ops when a removed group is not zero-invariant.

    Only zeroed tensors are copied; the traced program's other state is shared, never modified.
    """
    from prunec.rewrite.slicing import get_state, set_state

    traced = analysis.source
    gm = traced.exported.module()
    by_param: dict[str, list[tuple[int, tuple[int, ...]]]] = {}
    for group in removed:
        for s in group.members:
            by_param.setdefault(s.param, []).append((s.dim, s.indices))
    with torch.no_grad():
        for name, fills in by_param.items():
            t = get_state(gm, name).detach().clone()
            for dim, idx in fills:
                t.index_fill_(dim, torch.as_tensor(idx, dtype=torch.long, device=t.device), 0)
            for alias in analysis.aliases(name):
                try:
                    set_state(gm, alias, torch.nn.Parameter(t, requires_grad=False)
                              if isinstance(get_state(gm, alias), torch.nn.Parameter) else t)
                except AttributeError:
                    continue
    mixing = 0
    if not all(g.zero_invariant for g in removed):
        shapes = analysis.new_shapes(keep)
        graph = analysis.graph
        for node in gm.graph.nodes:
            if node.op != "call_function" or node.name not in analysis.coupling.reducing:
                continue
            if not graph.has_op(node.name):
                continue
            op = graph.op(node.name)
            if any(analysis.removed_axes(keep, v.name) for _, v in graph.inputs(op)):
                node.target = _RemovalAt(node.target, op, analysis, keep, shapes)
                mixing += 1
        gm.recompile()
    name = "zeroed original (the contract)" if mixing == 0 else (
        f"zeroed original with removal evaluated at {mixing} channel-mixing op(s)")
    return gm, name
