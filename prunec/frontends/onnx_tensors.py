"""Reading ONNX tensors lazily, and folding the statically known part of an ONNX graph.

`TensorStore` reads initializers without copying them into Python objects: inline raw data is
viewed with `np.frombuffer`, external data (models over 2 GB) is memory-mapped from its file.
`fold_node` evaluates one node with onnx's reference evaluator; the frontend uses it for the
shape computations exporters emit (Shape -> Gather -> Concat -> Reshape, causal masks, scales).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.external_data_helper import ExternalDataInfo, uses_external_data

from prunec.errors import OnnxModelError

FLOAT_TYPES = frozenset({onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
                         onnx.TensorProto.BFLOAT16})

# ops whose value changes from run to run: never folded
_RANDOM = frozenset({"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial",
                     "Bernoulli"})


def np_dtype(data_type: int) -> np.dtype:
    """The numpy dtype of an ONNX tensor element type."""
    return np.dtype(helper.tensor_dtype_to_np_dtype(data_type))


class TensorStore:
    """Initializers by name, read lazily (no copy of inline bytes, memory-mapped external data)."""

    def __init__(self, tensors: Sequence[onnx.TensorProto], base_dir: str | None) -> None:
        self.protos: dict[str, onnx.TensorProto] = {t.name: t for t in tensors}
        self.base_dir = base_dir

    def __contains__(self, name: str) -> bool:
        return name in self.protos

    def shape(self, name: str) -> tuple[int, ...]:
        """Dims of the initializer."""
        return tuple(int(d) for d in self.protos[name].dims)

    def is_float(self, name: str) -> bool:
        """Whether the initializer holds floating-point values."""
        return self.protos[name].data_type in FLOAT_TYPES

    def is_param(self, name: str) -> bool:
        """Floating-point initializers of rank >= 1 are the model's parameters."""
        return self.is_float(name) and len(self.protos[name].dims) >= 1

    def external(self, name: str) -> bool:
        """Whether the initializer's bytes live in an external file."""
        return uses_external_data(self.protos[name])

    def array(self, name: str) -> np.ndarray:
        """The initializer's values (read-only; a view, never a copy, where the layout allows)."""
        t = self.protos[name]
        dtype = np_dtype(t.data_type)
        shape = self.shape(name)
        if uses_external_data(t):
            return self._external(t, dtype, shape)
        if t.raw_data and dtype.kind in "fiub" and dtype.itemsize in (1, 2, 4, 8) and t.data_type != \
                onnx.TensorProto.BFLOAT16:
            arr = np.frombuffer(t.raw_data, dtype=dtype.newbyteorder("<"))
            return arr.reshape(shape)
        return numpy_helper.to_array(t)

    def _external(self, t: onnx.TensorProto, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        info = ExternalDataInfo(t)
        if self.base_dir is None:
            raise OnnxModelError(
                f"initializer {t.name!r} stores its data in external file {info.location!r}, but the model "
                "was given as an in-memory ModelProto. Pass the path of the .onnx file instead, so the "
                "data file can be found next to it.")
        path = os.path.join(self.base_dir, info.location)
        if not os.path.exists(path):
            raise OnnxModelError(f"initializer {t.name!r}: external data file {path!r} is missing; keep "
                                 "the data file next to the .onnx file it belongs to")
        count = int(np.prod(shape, dtype=np.int64))
        nbytes = count * dtype.itemsize
        if info.length and info.length < nbytes:
            raise OnnxModelError(f"initializer {t.name!r}: external data holds {info.length} bytes, "
                                 f"{nbytes} expected for shape {shape}; the data file is truncated")
        if count == 0:
            return np.zeros(shape, dtype=dtype)
        size = os.path.getsize(path)
        if info.offset + nbytes > size:
            raise OnnxModelError(f"initializer {t.name!r}: external data file {path!r} ends before the "
                                 "tensor does; the file is truncated")
        mm = np.memmap(path, dtype=dtype, mode="r", offset=info.offset, shape=(count,))
        return mm.reshape(shape)

    def nbytes(self, name: str) -> int:
        """Size of the initializer's data in bytes."""
        return int(np.prod(self.shape(name), dtype=np.int64)) * np_dtype(self.protos[name].data_type).itemsize


def has_subgraph(node: onnx.NodeProto) -> bool:
    """Whether a node carries graphs (If, Loop, Scan)."""
    return any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute)


def foldable(node: onnx.NodeProto) -> bool:
    """Deterministic nodes without subgraphs may be evaluated at analysis time."""
    return node.op_type not in _RANDOM and not has_subgraph(node)


def fold_node(node: onnx.NodeProto, values: Mapping[str, np.ndarray], opsets: Sequence[onnx.OperatorSetIdProto],
              functions: Sequence[onnx.FunctionProto] = ()) -> list[np.ndarray]:
    """Evaluate one node on known input values with onnx's reference evaluator."""
    from onnx.reference import ReferenceEvaluator

    ins = []
    feeds: dict[str, np.ndarray] = {}
    for name in node.input:
        if not name or name in feeds:
            continue
        arr = np.asarray(values[name])
        feeds[name] = arr
        ins.append(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(arr.dtype), arr.shape))
    outs = [helper.make_value_info(o, onnx.TypeProto()) for o in node.output if o]
    graph = helper.make_graph([node], "fold", ins, outs)
    model = helper.make_model(graph, opset_imports=list(opsets), functions=list(functions))
    result = ReferenceEvaluator(model).run(None, feeds)
    return [np.asarray(r) for r in result]


def shape_of(node: onnx.NodeProto, shape: tuple[int, ...]) -> np.ndarray:
    """Value of a Shape node (with its optional start/end) for an input of `shape`."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    rank = len(shape)
    start = int(attrs.get("start", 0))
    end = int(attrs.get("end", rank))
    start = min(max(start + rank if start < 0 else start, 0), rank)
    end = min(max(end + rank if end < 0 else end, 0), rank)
    return np.asarray(shape[start:end], dtype=np.int64)
