"""MACs formulas for ONNX ops beyond those `cost.py` knows (attention, Einsum, transposed Gemm)."""

from __future__ import annotations

import numpy as np

from prunec.analysis.cost import Shapes, register_cost
from prunec.ir.graph import Graph, OpNode


def _shapes(graph: Graph, node: OpNode, shapes: Shapes) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    return [shapes[v.name] for _, v in graph.inputs(node)], [shapes[v.name] for v in graph.outputs(node)]


@register_cost("onnx::Gemm")
def gemm_cost(graph: Graph, node: OpNode, shapes: Shapes) -> int:
    """M * N * K for Y = A B (+ C), with A or B possibly transposed."""
    ins, outs = _shapes(graph, node, shapes)
    b = ins[1]
    k = b[1] if node.attrs.get("transB") else b[0]
    return int(np.prod(outs[0], dtype=np.int64)) * int(k)


@register_cost("onnx::Attention", "com.microsoft::MultiHeadAttention")
def attention_cost(graph: Graph, node: OpNode, shapes: Shapes) -> int:
    """Scores (q tokens x k tokens x head size, per head) plus the weighted sum of values."""
    ins, outs = _shapes(graph, node, shapes)
    q, k, y = ins[0], ins[1], outs[0]
    if len(q) == 4:  # (batch, heads, tokens, head size)
        return int(q[0] * q[1] * q[2] * k[2] * (q[3] + y[3]))
    return int(q[0] * q[1] * k[1] * (q[2] + y[2]))  # (batch, tokens, heads * head size)


@register_cost("onnx::Einsum")
def einsum_cost(graph: Graph, node: OpNode, shapes: Shapes) -> int:
    """Product of the sizes of every letter of the equation."""
    eq = str(node.attrs.get("equation", "")).replace(" ", "")
    if "->" not in eq or "..." in eq:
        return 0
    sizes: dict[str, int] = {}
    for term, shape in zip(eq.split("->")[0].split(","), _shapes(graph, node, shapes)[0]):
        for letter, n in zip(term, shape):
            sizes[letter] = max(sizes.get(letter, 1), int(n))
    return int(np.prod(list(sizes.values()), dtype=np.int64))
