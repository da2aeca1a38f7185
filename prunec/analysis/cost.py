"""MACs and parameter counts computed on the IR, before or after a removal.

MACs count the multiply-accumulates of convolutions, linear layers, matrix products and attention
(functional calls included, since the IR is ATen-level). Elementwise ops and norms are not counted,
the usual convention of MAC counters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from prunec.ir.graph import Graph, OpNode
from prunec.rules.registry import normalize_key

Shapes = Mapping[str, tuple[int, ...]]
CostFn = Callable[[Graph, OpNode, Shapes], int]

COSTS: dict[str, CostFn] = {}
"""op key -> MACs of one node given value shapes."""


def register_cost(*keys: str) -> Callable[[CostFn], CostFn]:
    """Decorator: register a MACs formula for op keys."""
    def wrap(fn: CostFn) -> CostFn:
        for k in keys:
            COSTS[normalize_key(k)] = fn
        return fn
    return wrap


def _prod(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64)) if shape else 1


def _in(graph: Graph, node: OpNode, shapes: Shapes, port: str) -> tuple[int, ...] | None:
    for p, v in graph.inputs(node):
        if p == port:
            return shapes[v.name]
    return None


def _out(graph: Graph, node: OpNode, shapes: Shapes, i: int = 0) -> tuple[int, ...]:
    return shapes[graph.outputs(node)[i].name]


@register_cost("aten::conv1d", "aten::conv2d", "aten::conv3d", "aten::convolution", "aten::_convolution",
               "aten::conv_transpose1d", "aten::conv_transpose2d", "aten::conv_transpose3d", "onnx::Conv",
               "onnx::ConvTranspose")
def _conv_cost(graph: Graph, node: OpNode, shapes: Shapes) -> int:
    ins = graph.inputs(node)
    w = shapes[ins[1][1].name]
    transposed = bool(node.attrs.get("transposed", False)) or "transpose" in node.op.lower()
    if transposed:
        return _prod(shapes[ins[0][1].name]) * _prod(w[1:])  # each input element feeds (out/g)*k
    return _prod(_out(graph, node, shapes)) * _prod(w[1:])  # each output element reads (in/g)*k


@register_cost("aten::linear", "onnx::Gemm")
def _linear_cost(graph: Graph, node: OpNode, shapes: Shapes) -> int:
    ins = graph.inputs(node)
    x = shapes[ins[0][1].name]
    return _prod(_out(graph, node, shapes)) * (x[-1] if x else 1)


@register_cost("aten::matmul", "aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm", "aten::mv",
               "aten::dot", "onnx::MatMul")
def _matmul_cost(graph: Graph, node: OpNode, shapes: Shapes) -> int:
    ins = graph.inputs(node)
    a_idx = 1 if node.op in ("aten::addmm", "aten::baddbmm") else 0
    a = shapes[ins[a_idx][1].name]
    k = a[-1] if a else 1
    return _prod(_out(graph, node, shapes)) * k


@register_cost("aten::scaled_dot_product_attention")
def _sdpa_cost(graph: Graph, node: OpNode, shapes: Shapes) -> int:
    q = _in(graph, node, shapes, "query") or ()
    k = _in(graph, node, shapes, "key") or ()
    v = _in(graph, node, shapes, "value") or ()
    if len(q) < 2 or len(k) < 2 or len(v) < 1:
        return 0
    scores = _prod(q[:-1]) * k[-2]
    return scores * q[-1] + scores * v[-1]


@register_cost("aten::addbmm")
def _addbmm_cost(graph: Graph, node: OpNode, shapes: Shapes) -> int:
    b1 = _in(graph, node, shapes, "batch1") or ()
    b2 = _in(graph, node, shapes, "batch2") or ()
    return _prod(b1) * (b2[-1] if b2 else 1)  # (b, n, m) @ (b, m, p), summed over b


@register_cost("aten::addmv")
def _addmv_cost(graph: Graph, node: OpNode, shapes: Shapes) -> int:
    return _prod(_in(graph, node, shapes, "mat") or ())


@register_cost("aten::einsum")
def _einsum_cost(graph: Graph, node: OpNode, shapes: Shapes) -> int:
    """Product of the sizes of every index letter (ellipsis dims count as extra letters)."""
    eq = str(node.attrs.get("equation", "")).replace(" ", "")
    if "->" not in eq:
        return 0
    sizes: dict[str, int] = {}
    operands = [v for p, v in graph.inputs(node) if p.startswith("tensors")]
    for term, v in zip(eq.split("->")[0].split(","), operands):
        shape = shapes[v.name]
        if "..." in term:
            head, tail = term.split("...")
            n_ell = len(shape) - len(head) - len(tail)
            # ellipsis dims align from the right across operands
            letters = list(head) + [f"...{n_ell - 1 - i}" for i in range(n_ell)] + list(tail)
        else:
            letters = list(term)
        for letter, n in zip(letters, shape):
            sizes[letter] = max(sizes.get(letter, 1), n)
    return _prod(tuple(sizes.values()))


def node_macs(graph: Graph, node: OpNode, shapes: Shapes) -> int:
    """MACs of one node (0 for ops without a MACs formula)."""
    fn = COSTS.get(node.op)
    return int(fn(graph, node, shapes)) if fn is not None else 0


def node_size(graph: Graph, node: OpNode, shapes: Shapes) -> float:
    """A size that an op's run time grows with: its MACs when it has a formula, else the number
    of elements it reads and writes.
    """
    if node.op in COSTS:
        return float(node_macs(graph, node, shapes))
    total = sum(_prod(shapes[v.name]) for _, v in graph.inputs(node))
    return float(total + sum(_prod(shapes[v.name]) for v in graph.outputs(node)))


def graph_macs(graph: Graph, shapes: Shapes | None = None) -> int:
    """Total MACs of the graph (original shapes unless `shapes` is given)."""
    if shapes is None:
        shapes = {v.name: v.shape for v in graph.values()}
    total = 0
    for node in graph.ops():
        fn = COSTS.get(node.op)
        if fn is not None:
            total += int(fn(graph, node, shapes))
    return total


def graph_params(graph: Graph, shapes: Shapes | None = None) -> int:
    """Number of parameter elements read by the graph (tied weights once; buffers excluded)."""
    from prunec.ir.graph import ValueKind

    total = 0
    for v in graph.values():
        if v.kind == ValueKind.PARAM:
            total += _prod(shapes[v.name] if shapes is not None else v.shape)
    return total


@dataclass(frozen=True)
class CostSummary:
    """Params and MACs before and after a removal."""

    params_before: int
    params_after: int
    macs_before: int
    macs_after: int

    @property
    def params_ratio(self) -> float:
        """Fraction of parameters kept."""
        return self.params_after / self.params_before if self.params_before else 1.0

    @property
    def macs_ratio(self) -> float:
        """Fraction of MACs kept."""
        return self.macs_after / self.macs_before if self.macs_before else 1.0
