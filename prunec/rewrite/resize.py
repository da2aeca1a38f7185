"""Resizers: recompute the size-carrying arguments of an op once its tensors shrank.

Used by the GraphModule rewrite (to edit fx nodes) and by the removal reference (to run a single op
on pruned tensors). A resizer maps (target, args, kwargs) to new ones; ops without size arguments
need none. Rows are keyed by op like the rule table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from prunec.ir.graph import Graph, OpNode
from prunec.rules.registry import normalize_key


class ResizeContext:
    """New and old shapes around one node, and the kept indices of its tensors."""

    def __init__(self, graph: Graph, node: OpNode, new_shapes: dict[str, tuple[int, ...]],
                 kept: Callable[[str, int], np.ndarray]) -> None:
        self.graph = graph
        self.node = node
        self._new = new_shapes
        self._kept = kept
        self._ins = dict(graph.inputs(node))
        self._outs = graph.outputs(node)

    def in_shape(self, port: str) -> tuple[int, ...]:
        """New shape of the input on `port`."""
        return self._new[self._ins[port].name]

    def old_in_shape(self, port: str) -> tuple[int, ...]:
        """Original shape of the input on `port`."""
        return self._ins[port].shape

    def out_shape(self, index: int = 0) -> tuple[int, ...]:
        """New shape of output `index`."""
        return self._new[self._outs[index].name]

    def old_out_shape(self, index: int = 0) -> tuple[int, ...]:
        """Original shape of output `index`."""
        return self._outs[index].shape

    def kept_in(self, port: str, axis: int) -> np.ndarray:
        """Original indices kept along `axis` of the input on `port`."""
        return self._kept(self._ins[port].name, axis)

    def kept_out(self, index: int, axis: int) -> np.ndarray:
        """Original indices kept along `axis` of output `index`."""
        return self._kept(self._outs[index].name, axis)

    @property
    def num_outputs(self) -> int:
        """Number of tensor outputs."""
        return len(self._outs)


class Args:
    """Read and write a call's arguments by schema name, positional or keyword."""

    def __init__(self, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.target = target
        self.args = list(args)
        self.kwargs = dict(kwargs)
        schema = getattr(target, "_schema", None)
        self._names = [a.name for a in schema.arguments] if schema is not None else []
        self._kwarg_only = {a.name for a in schema.arguments if a.kwarg_only} if schema is not None else set()

    def get(self, name: str, default: Any = None) -> Any:
        """The argument's value (its default when not given)."""
        if name in self.kwargs:
            return self.kwargs[name]
        if name in self._names:
            i = self._names.index(name)
            if i < len(self.args):
                return self.args[i]
        return default

    def set(self, name: str, value: Any) -> None:
        """Set an argument, positionally if it was given positionally."""
        if name in self._names:
            i = self._names.index(name)
            if i < len(self.args) and name not in self._kwarg_only:
                self.args[i] = value
                return
        self.kwargs[name] = value

    def result(self) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
        """(target, args, kwargs)."""
        return self.target, tuple(self.args), self.kwargs


Resizer = Callable[[Args, ResizeContext], None]
RESIZERS: dict[str, Resizer] = {}


def register_resizer(*keys: str) -> Callable[[Resizer], Resizer]:
    """Decorator: register how an op's size arguments follow its new tensor shapes."""
    def wrap(fn: Resizer) -> Resizer:
        for k in keys:
            RESIZERS[normalize_key(k)] = fn
        return fn
    return wrap


def resize_call(node: OpNode, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                ctx: ResizeContext) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    """New (target, args, kwargs) for `node` after pruning (unchanged when no resizer applies)."""
    fn = RESIZERS.get(node.op)
    if fn is None:
        return target, args, kwargs
    a = Args(target, args, kwargs)
    fn(a, ctx)
    return a.result()


def _keep_minus_one(old: Any, new: tuple[int, ...]) -> list[int]:
    old_l = list(old) if isinstance(old, (list, tuple)) else []
    out = list(new)
    if len(old_l) == len(out) and sum(1 for v in old_l if isinstance(v, int) and v == -1) == 1:
        out[[i for i, v in enumerate(old_l) if isinstance(v, int) and v == -1][0]] = -1
    return out


@register_resizer("aten::view", "aten::reshape", "aten::_unsafe_view", "aten::view_copy")
def _view(a: Args, ctx: ResizeContext) -> None:
    name = "shape" if a.get("shape") is not None else "size"
    a.set(name, _keep_minus_one(a.get(name), ctx.out_shape()))


@register_resizer("aten::expand")
def _expand(a: Args, ctx: ResizeContext) -> None:
    a.set("size", _keep_minus_one(a.get("size"), ctx.out_shape()))


@register_resizer("aten::unflatten")
def _unflatten(a: Args, ctx: ResizeContext) -> None:
    dim = int(a.get("dim")) % len(ctx.in_shape("self"))
    n = len(a.get("sizes"))
    a.set("sizes", list(ctx.out_shape()[dim: dim + n]))


def _split_sizes(ctx: ResizeContext, dim: int) -> list[int]:
    return [ctx.out_shape(i)[dim] for i in range(ctx.num_outputs)]


@register_resizer("aten::split", "aten::split_with_sizes", "aten::unsafe_split", "aten::chunk")
def _split(a: Args, ctx: ResizeContext) -> None:
    rank = len(ctx.in_shape("self"))
    dim = int(a.get("dim", 0)) % rank
    sizes = _split_sizes(ctx, dim)
    if ctx.node.op == "aten::chunk" and len(set(sizes)) == 1:
        return
    new = Args(torch.ops.aten.split_with_sizes.default, (a.get("self"), sizes, dim), {})
    a.target, a.args, a.kwargs = new.target, new.args, new.kwargs


@register_resizer("aten::slice")
def _slice(a: Args, ctx: ResizeContext) -> None:
    rank = len(ctx.in_shape("self"))
    dim = int(a.get("dim", 0)) % rank
    kept = ctx.kept_in("self", dim)
    old_size = ctx.old_in_shape("self")[dim]
    start = a.get("start")
    start = 0 if start is None else int(start)
    start = max(0, min(start + old_size if start < 0 else start, old_size))
    new_start = int(np.searchsorted(kept, start))
    a.set("start", new_start)
    a.set("end", new_start + ctx.out_shape()[dim] * int(a.get("step", 1) or 1))


@register_resizer("aten::narrow")
def _narrow(a: Args, ctx: ResizeContext) -> None:
    rank = len(ctx.in_shape("self"))
    dim = int(a.get("dim")) % rank
    kept = ctx.kept_in("self", dim)
    start = int(a.get("start"))
    start = start + ctx.old_in_shape("self")[dim] if start < 0 else start
    a.set("start", int(np.searchsorted(kept, start)))
    a.set("length", ctx.out_shape()[dim])


@register_resizer("aten::select")
def _select(a: Args, ctx: ResizeContext) -> None:
    rank = len(ctx.in_shape("self"))
    dim = int(a.get("dim")) % rank
    index = int(a.get("index")) % ctx.old_in_shape("self")[dim]
    a.set("index", int(np.searchsorted(ctx.kept_in("self", dim), index)))


@register_resizer("aten::layer_norm", "aten::native_layer_norm", "aten::rms_norm")
def _layer_norm(a: Args, ctx: ResizeContext) -> None:
    n = len(a.get("normalized_shape"))
    a.set("normalized_shape", list(ctx.in_shape("input")[-n:]))


@register_resizer("aten::group_norm")
def _group_norm(a: Args, ctx: ResizeContext) -> None:
    groups = int(a.get("num_groups"))
    if groups > 1:
        old_c, new_c = ctx.old_in_shape("input")[1], ctx.in_shape("input")[1]
        a.set("num_groups", max(1, new_c // (old_c // groups)))


@register_resizer("aten::native_group_norm")
def _native_group_norm(a: Args, ctx: ResizeContext) -> None:
    groups = int(a.get("group"))
    old_c, new_c = ctx.old_in_shape("input")[1], ctx.in_shape("input")[1]
    a.set("C", new_c)
    if groups > 1:
        a.set("group", max(1, new_c // (old_c // groups)))


@register_resizer("aten::conv1d", "aten::conv2d", "aten::conv3d", "aten::convolution", "aten::_convolution",
                  "aten::conv_transpose1d", "aten::conv_transpose2d", "aten::conv_transpose3d")
def _conv(a: Args, ctx: ResizeContext) -> None:
    w = ctx.in_shape("weight")
    x = ctx.in_shape("input")
    cx = 1 if len(x) == len(w) else 0
    transposed = bool(a.get("transposed", False)) or "transpose" in ctx.node.op
    if transposed:
        out = ctx.out_shape()[cx]
        a.set("groups", max(1, out // max(w[1], 1)))
    else:
        a.set("groups", max(1, x[cx] // max(w[1], 1)))


@register_resizer("aten::constant_pad_nd", "aten::pad")
def _pad(a: Args, ctx: ResizeContext) -> None:
    pads = [int(p) for p in a.get("pad")]
    rank = len(ctx.in_shape("self"))
    new = list(pads)
    for i in range(len(pads) // 2):
        axis = rank - 1 - i
        before, after = pads[2 * i], pads[2 * i + 1]
        if before < 0 or after < 0:
            continue
        kept = ctx.kept_out(0, axis)
        n_in = ctx.old_in_shape("self")[axis]
        new[2 * i] = int(np.count_nonzero(kept < before))
        new[2 * i + 1] = int(np.count_nonzero(kept >= before + n_in))
    a.set("pad", new)


@register_resizer("aten::repeat_interleave")
def _repeat_interleave(a: Args, ctx: ResizeContext) -> None:
    if a.get("output_size") is not None and a.get("dim") is not None:
        dim = int(a.get("dim")) % len(ctx.out_shape())
        a.set("output_size", ctx.out_shape()[dim])


@register_resizer("aten::_assert_tensor_metadata")
def _assert_meta(a: Args, ctx: ResizeContext) -> None:
    if a.get("size") is not None:
        a.set("size", list(ctx.in_shape("a")))
    if a.get("stride") is not None:
        a.set("stride", None)


@register_resizer("aten::new_zeros", "aten::new_ones", "aten::new_empty", "aten::new_full", "aten::zeros",
                  "aten::ones", "aten::full", "aten::empty")
def _creation(a: Args, ctx: ResizeContext) -> None:
    if ctx.num_outputs and ctx.out_shape() != ctx.old_out_shape():
        a.set("size", list(ctx.out_shape()))
