"""Attention ops (ONNX opset 23 `Attention`, onnxruntime's `MultiHeadAttention`): whole heads are pruned
and the head-count attributes are rewritten."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import prunec
from tests.onnx.helpers import expected_params, params, rand, relative_diff, run, zeroed

B, S, E, D = 2, 5, 16, 8


def _model(op: str, hq: int, hkv: int, *, four_d: bool = False) -> onnx.ModelProto:
    """x -> q/k/v projections -> attention -> output projection."""
    nodes = [helper.make_node("MatMul", ["x", "wq"], ["q"]), helper.make_node("MatMul", ["x", "wk"], ["k"]),
             helper.make_node("MatMul", ["x", "wv"], ["v"])]
    inits = {"wq": rand(E, hq * D), "wk": rand(E, hkv * D, seed=1), "wv": rand(E, hkv * D, seed=2),
             "wo": rand(hq * D, E, seed=3)}
    names = ["q", "k", "v"]
    if four_d:
        for t, h in (("q", hq), ("k", hkv), ("v", hkv)):
            inits[f"{t}_shape"] = np.asarray([B, S, h, D], dtype=np.int64)
            nodes += [helper.make_node("Reshape", [t, f"{t}_shape"], [f"{t}4"]),
                      helper.make_node("Transpose", [f"{t}4"], [f"{t}t"], perm=[0, 2, 1, 3])]
        names = ["qt", "kt", "vt"]
    attrs = {"num_heads": hq, "domain": "com.microsoft"} if op == "MultiHeadAttention" else (
        {} if four_d else {"q_num_heads": hq, "kv_num_heads": hkv})
    nodes.append(helper.make_node(op, names, ["a"], **attrs))
    if four_d:
        inits["a_shape"] = np.asarray([B, S, hq * D], dtype=np.int64)
        nodes += [helper.make_node("Transpose", ["a"], ["at"], perm=[0, 2, 1, 3]),
                  helper.make_node("Reshape", ["at", "a_shape"], ["a3"])]
    nodes.append(helper.make_node("MatMul", ["a3" if four_d else "a", "wo"], ["y"]))
    graph = helper.make_graph(nodes, "attn", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, (B, S, E))],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, (B, S, E))],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    opsets = [helper.make_opsetid("", 23)] + ([helper.make_opsetid("com.microsoft", 1)]
                                             if op == "MultiHeadAttention" else [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 10
    return model


def _attn_attrs(model: onnx.ModelProto) -> dict[str, int]:
    node = next(n for n in model.graph.node if n.op_type in ("Attention", "MultiHeadAttention"))
    return {a.name: a.i for a in node.attribute}


@pytest.mark.parametrize(("op", "hq", "hkv", "four_d", "attrs"), [
    ("Attention", 4, 2, False, {"q_num_heads": 2, "kv_num_heads": 1}),
    ("Attention", 4, 4, True, {}),
    ("MultiHeadAttention", 4, 4, False, {"num_heads": 2}),
])
def test_attention_prunes_whole_heads(op, hq, hkv, four_d, attrs):
    """Half the heads go (a GQA key/value head with its query heads); the contract holds exactly."""
    model = _model(op, hq, hkv, four_d=four_d)
    result = prunec.prune(model, ratio=0.5)
    assert result.verification.passed and all(g.zero_invariant for g in result.removed)
    assert _attn_attrs(result.model) == {**_attn_attrs(model), **attrs}
    inits = {t.name: tuple(t.dims) for t in result.model.graph.initializer}
    assert inits["wq"] == (E, hq * D // 2) and inits["wo"] == (hq * D // 2, E)
    assert params(result.model) == expected_params(model, result.removed)
    x = np.random.default_rng(0).standard_normal((B, S, E)).astype(np.float32)
    assert relative_diff(run(result.model, {"x": x}), run(zeroed(model, result.removed), {"x": x})) <= 1e-4


def test_attention_macs_count_scores_and_values():
    """The attention MACs are batch x q tokens x k tokens x (q width + output width)."""
    from prunec.analysis.cost import graph_macs

    analysis = prunec.analyze(_model("Attention", 4, 2))
    projections = B * S * E * (4 * D + 2 * D + 2 * D + 4 * D)
    assert graph_macs(analysis.graph) == projections + B * S * S * (4 * D + 4 * D)
