"""Fix the size attributes of modules after their parameters were sliced.

One fixer per module class (looked up along the MRO), as rows: each reads the new parameter shapes
and, where needed, the new shapes of the values its op reads or writes in the IR.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from prunec.ir.graph import Graph, OpNode


class ModuleContext:
    """What a fixer may ask about its module's call in the pruned graph."""

    def __init__(self, graph: Graph, path: str, new_shapes: dict[str, tuple[int, ...]],
                 ops_by_origin: dict[str, list[OpNode]], notes: list[str] | None = None) -> None:
        self.graph = graph
        self.path = path
        self._shapes = new_shapes
        self._ops = ops_by_origin.get(path, [])
        self._ops_by_origin = ops_by_origin
        self.notes = notes if notes is not None else []
        """Messages for the prune report (what a fixer could not do, and why)."""

    def subtree_ops(self) -> list[OpNode]:
        """Ops run by this module or any of its submodules (every op for the root module)."""
        if not self.path:
            return list(self.graph.ops())
        prefix = self.path + "."
        return [op for origin, ops in self._ops_by_origin.items()
                if origin == self.path or origin.startswith(prefix) for op in ops]

    def shape(self, value: str) -> tuple[int, ...]:
        """New shape of any value of the graph."""
        return self._shapes[value]

    def note(self, text: str) -> None:
        """Add a message to the prune report."""
        self.notes.append(text)

    def op(self, *keys: str) -> OpNode | None:
        """The first op of one of these kinds that ran directly in this module."""
        for node in self._ops:
            if node.op in keys:
                return node
        return None

    def input_shape(self, node: OpNode, index: int = 0) -> tuple[int, ...]:
        """New shape of the node's `index`-th tensor input."""
        return self._shapes[self.graph.inputs(node)[index][1].name]

    def output_shape(self, node: OpNode, index: int = 0) -> tuple[int, ...]:
        """New shape of the node's `index`-th output."""
        return self._shapes[self.graph.outputs(node)[index].name]


Fixer = Callable[[nn.Module, ModuleContext], None]
FIXERS: dict[type, Fixer] = {}
MODEL_FIXERS: list[Fixer] = []
"""Run once on the root module after the per-module fixers (e.g. a HuggingFace config update)."""


def register_model_fixer(fn: Fixer) -> Fixer:
    """Decorator: run `fn(root_module, ctx)` after every rewrite, once all module fixers ran."""
    if fn not in MODEL_FIXERS:
        MODEL_FIXERS.append(fn)
    return fn


def register_fixer(*classes: type) -> Callable[[Fixer], Fixer]:
    """Decorator: register a size-attribute fixer for module classes (subclasses included)."""
    def wrap(fn: Fixer) -> Fixer:
        for c in classes:
            FIXERS[c] = fn
        return fn
    return wrap


def fixer_for(module: nn.Module) -> Fixer | None:
    """The fixer of the nearest class in the module's MRO, if any."""
    for cls in type(module).__mro__:
        if cls in FIXERS:
            return FIXERS[cls]
    return None


_CONV_OPS = ("aten::conv1d", "aten::conv2d", "aten::conv3d", "aten::convolution", "aten::_convolution",
             "aten::conv_transpose1d", "aten::conv_transpose2d", "aten::conv_transpose3d")


@register_fixer(nn.Conv1d, nn.Conv2d, nn.Conv3d)
def _conv(m: nn.Module, ctx: ModuleContext) -> None:
    w = m.weight
    m.out_channels = int(w.shape[0])
    node = ctx.op(*_CONV_OPS)
    if node is not None:
        in_ch = ctx.input_shape(node)[1 if len(ctx.input_shape(node)) == w.dim() else 0]
    else:
        in_ch = int(w.shape[1]) * m.groups
    m.groups = max(1, in_ch // int(w.shape[1]))
    m.in_channels = int(in_ch)


@register_fixer(nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
def _conv_transpose(m: nn.Module, ctx: ModuleContext) -> None:
    w = m.weight
    m.in_channels = int(w.shape[0])
    node = ctx.op(*_CONV_OPS)
    if node is not None:
        out_shape = ctx.output_shape(node)
        out_ch = out_shape[1 if len(out_shape) == w.dim() else 0]
    else:
        out_ch = int(w.shape[1]) * m.groups
    m.groups = max(1, out_ch // int(w.shape[1]))
    m.out_channels = int(out_ch)


@register_fixer(nn.Linear)
def _linear(m: nn.Module, ctx: ModuleContext) -> None:
    m.in_features, m.out_features = int(m.weight.shape[1]), int(m.weight.shape[0])


@register_fixer(nn.Bilinear)
def _bilinear(m: nn.Module, ctx: ModuleContext) -> None:
    m.out_features, m.in1_features, m.in2_features = (int(s) for s in m.weight.shape)


@register_fixer(nn.modules.batchnorm._NormBase)
def _batch_norm(m: nn.Module, ctx: ModuleContext) -> None:
    for name in ("weight", "running_mean"):
        t = getattr(m, name, None)
        if isinstance(t, torch.Tensor):
            m.num_features = int(t.shape[0])
            return
    node = ctx.op("aten::batch_norm", "aten::instance_norm")
    if node is not None:
        m.num_features = int(ctx.input_shape(node)[1])


@register_fixer(nn.LayerNorm)
def _layer_norm(m: nn.Module, ctx: ModuleContext) -> None:
    n = len(m.normalized_shape)
    if m.weight is not None:
        m.normalized_shape = tuple(int(s) for s in m.weight.shape)
        return
    node = ctx.op("aten::layer_norm", "aten::native_layer_norm")
    if node is not None:
        m.normalized_shape = tuple(int(s) for s in ctx.input_shape(node)[-n:])


if hasattr(nn, "RMSNorm"):
    @register_fixer(nn.RMSNorm)
    def _rms_norm(m: nn.Module, ctx: ModuleContext) -> None:
        n = len(m.normalized_shape)
        if m.weight is not None:
            m.normalized_shape = tuple(int(s) for s in m.weight.shape)
            return
        node = ctx.op("aten::rms_norm")
        if node is not None:
            m.normalized_shape = tuple(int(s) for s in ctx.input_shape(node)[-n:])


@register_fixer(nn.GroupNorm)
def _group_norm(m: nn.Module, ctx: ModuleContext) -> None:
    old_c, old_g = m.num_channels, m.num_groups
    if m.weight is not None:
        new_c = int(m.weight.shape[0])
    else:
        node = ctx.op("aten::group_norm")
        new_c = int(ctx.input_shape(node)[1]) if node is not None else old_c
    if old_g > 1:
        m.num_groups = max(1, new_c // (old_c // old_g))  # whole groups were removed
    m.num_channels = new_c


@register_fixer(nn.Embedding)
def _embedding(m: nn.Module, ctx: ModuleContext) -> None:
    m.num_embeddings, m.embedding_dim = (int(s) for s in m.weight.shape)


@register_fixer(nn.EmbeddingBag)
def _embedding_bag(m: nn.Module, ctx: ModuleContext) -> None:
    m.num_embeddings, m.embedding_dim = (int(s) for s in m.weight.shape)


@register_fixer(nn.PReLU)
def _prelu(m: nn.Module, ctx: ModuleContext) -> None:
    m.num_parameters = int(m.weight.numel())


@register_fixer(nn.Unflatten)
def _unflatten(m: nn.Module, ctx: ModuleContext) -> None:
    node = ctx.op("aten::unflatten", "aten::view", "aten::reshape")
    if node is None:
        return
    out = ctx.output_shape(node)
    dim = m.dim % len(ctx.input_shape(node))
    m.unflattened_size = tuple(out[dim: dim + len(m.unflattened_size)])
