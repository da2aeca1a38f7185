"""Helpers for the ONNX tests: export zoo models, and check the contract independently of prunec."""

from __future__ import annotations

import os
import warnings
from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import helper, numpy_helper
from prunec.zoo import ZOO


def export_zoo(name: str, directory: str, *, dynamic_batch: bool = True) -> str:
    """Export a zoo model with torch.onnx's TorchScript exporter (fast, works offline)."""
    entry = ZOO[name]
    model, example = entry.build(), entry.example_inputs()
    path = os.path.join(directory, f"{name}.onnx")
    axes = {"x": {0: "batch"}, "y": {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), path, dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes=axes, opset_version=17)
    return path


def run(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Run a model in onnxruntime (CPU)."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, dict(feeds))


def zeroed(model: onnx.ModelProto, removed: Sequence[object]) -> onnx.ModelProto:
    """The contract's reference: a copy with every removed member slice of every initializer zeroed."""
    ref = onnx.ModelProto()
    ref.CopyFrom(model)
    by_name = {t.name: t for t in ref.graph.initializer}
    for group in removed:
        for s in group.members:  # type: ignore[attr-defined]
            values = numpy_helper.to_array(by_name[s.param]).copy()
            index = [slice(None)] * values.ndim
            index[s.dim] = list(s.indices)
            values[tuple(index)] = 0
            by_name[s.param].CopyFrom(numpy_helper.from_array(values, s.param))
    return ref


def relative_diff(got: Sequence[np.ndarray], want: Sequence[np.ndarray]) -> float:
    """Worst max|got - want| / max|want| over outputs (inf on a shape mismatch)."""
    worst = 0.0
    for g, w in zip(got, want):
        if g.shape != w.shape:
            return float("inf")
        worst = max(worst, float(np.abs(g - w).max()) / max(float(np.abs(w).max()), 1e-12))
    return worst


def params(model: onnx.ModelProto) -> int:
    """Elements of floating-point initializers of rank >= 1 (prunec's ONNX parameter count)."""
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16}
    return sum(int(np.prod(t.dims)) for t in model.graph.initializer if t.data_type in floats and len(t.dims))


def expected_params(model: onnx.ModelProto, removed: Sequence[object]) -> int:
    """Parameter count after removing exactly the slices listed in `removed`."""
    drops: dict[tuple[str, int], set[int]] = defaultdict(set)
    for g in removed:
        for s in g.members:  # type: ignore[attr-defined]
            drops[(s.param, s.dim)].update(s.indices)
    shapes = {t.name: list(t.dims) for t in model.graph.initializer}
    for (param, dim), idx in drops.items():
        shapes[param][dim] -= len(idx)
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16}
    return sum(int(np.prod(shapes[t.name])) for t in model.graph.initializer
               if t.data_type in floats and len(t.dims))


def make_model(nodes: list[onnx.NodeProto], inputs: dict[str, tuple[int, ...]], outputs: Sequence[str],
               initializers: Mapping[str, np.ndarray], opset: int = 18) -> onnx.ModelProto:
    """A small float model from nodes, input shapes, output names and initializer values."""
    graph = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    feeds = {n: np.zeros(s, dtype=np.float32) for n, s in inputs.items()}
    for out, value in zip(model.graph.output, run(model, feeds)):  # declare the output shapes
        out.CopyFrom(helper.make_tensor_value_info(out.name, onnx.TensorProto.FLOAT, value.shape))
    onnx.checker.check_model(model)
    return model


def rand(*shape: int, seed: int = 0) -> np.ndarray:
    """Random float32 weights (seeded by shape and `seed`)."""
    rng = np.random.default_rng(seed + sum(shape) * 7 + len(shape))
    return rng.standard_normal(shape).astype(np.float32)
