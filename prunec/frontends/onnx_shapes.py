"""Shapes for the ONNX frontend: concrete input shapes, folding of the statically known part of
the graph alternated with onnx shape inference, an onnxruntime probe for what inference leaves
open, and which axes are symbolic (dynamic batch) in the original model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx
from onnx import helper

from prunec.errors import InputError, OnnxModelError
from prunec.frontends.onnx_tensors import TensorStore, fold_node, foldable, np_dtype, shape_of

FOLD_LIMIT = 1 << 22
"""Largest folded tensor (elements) kept in memory; bigger ones stay ops of the graph."""

Shapes = dict[str, tuple[tuple[int | None, ...], int]]
"""Value name -> (dims, None where unknown; ONNX element type)."""

SEQUENCE: tuple[tuple[int, ...]] = ((),)
"""The dims given to an ONNX sequence value: rank 0, so it carries no channels, and the ops that
read or build sequences (which have no rules) are declined, pinning the tensors around them."""


def _dims(vi: onnx.ValueInfoProto) -> list[int | str | None] | None:
    t = vi.type.tensor_type
    if not vi.type.HasField("tensor_type") or not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]


def resolve_input_shapes(model: onnx.ModelProto, given: Mapping[str, Sequence[int]] | None, batch: int
                         ) -> dict[str, tuple[int, ...]]:
    """Concrete shapes of the graph inputs: given ones, else the declared dims with a symbolic
    first axis set to `batch`. Any other symbolic dim needs a given shape.
    """
    inits = {t.name for t in model.graph.initializer}
    inputs = [vi for vi in model.graph.input if vi.name not in inits]
    given = dict(given or {})
    unknown = [k for k in given if k not in {vi.name for vi in inputs}]
    if unknown:
        raise InputError(f"input shape given for {unknown[0]!r}, which is not an input of the model; its "
                         f"inputs are {', '.join(repr(vi.name) for vi in inputs)}")
    out: dict[str, tuple[int, ...]] = {}
    for vi in inputs:
        dims = _dims(vi)
        if vi.name in given:
            shape = tuple(int(d) for d in given[vi.name])
            if dims is not None and len(dims) != len(shape):
                raise InputError(f"input {vi.name!r} has rank {len(dims)} but the given shape {shape} has "
                                 f"rank {len(shape)}")
            fixed = [(k, d) for k, d in enumerate(dims or ())
                     if isinstance(d, int) and d > 0 and d != shape[k]]
            if fixed:
                k, d = fixed[0]
                declared = tuple(x if isinstance(x, int) and x > 0 else "?" for x in dims or ())
                raise InputError(f"input {vi.name!r} is given shape {shape}, but the model fixes axis {k} "
                                 f"at {d} (declared {declared})")
            out[vi.name] = shape
            continue
        if dims is None:
            raise InputError(f"input {vi.name!r} declares no shape; pass its shape, e.g. "
                             f"--input-shape {vi.name}=1,3,224,224 (input_shapes= in Python)")
        shape_l: list[int] = []
        for axis, d in enumerate(dims):
            if isinstance(d, int) and d > 0:
                shape_l.append(d)
            elif axis == 0:
                shape_l.append(batch)
            else:
                raise InputError(
                    f"input {vi.name!r} has a symbolic dimension {d or '?'!r} at axis {axis}; pass a concrete "
                    f"shape, e.g. --input-shape {vi.name}=" + ",".join(
                        str(x) if isinstance(x, int) and x > 0 else ("1" if i == 0 else "N")
                        for i, x in enumerate(dims)) + " (input_shapes= in Python)")
        out[vi.name] = tuple(shape_l)
    return out


# -- folding and shapes ------------------------------------------------------------------------

def _initial_known(model: onnx.ModelProto, store: TensorStore) -> dict[str, np.ndarray]:
    known: dict[str, np.ndarray] = {}
    for t in model.graph.initializer:
        if not store.is_param(t.name):
            known[t.name] = store.array(t.name)
    return known


def _inference_model(model: onnx.ModelProto, store: TensorStore, input_shapes: Mapping[str, tuple[int, ...]],
                     known: Mapping[str, np.ndarray], folded: set[int]) -> onnx.ModelProto:
    """The graph without folded nodes, folded tensors as initializers, parameters as typed inputs
    (no data needed), concrete input shapes: what onnx shape inference sees.
    """
    g = model.graph
    nodes = [n for i, n in enumerate(g.node) if i not in folded]
    used = {name for n in nodes for name in n.input if name}
    used |= {o.name for o in g.output}
    inputs = []
    for vi in g.input:
        if vi.name in input_shapes:
            inputs.append(helper.make_tensor_value_info(vi.name, vi.type.tensor_type.elem_type,
                                                        input_shapes[vi.name]))
    inits = []
    for name in sorted(used):
        if name in known:
            inits.append(onnx.numpy_helper.from_array(np.asarray(known[name]), name))
        elif name in store and store.is_param(name):
            inputs.append(helper.make_tensor_value_info(name, store.protos[name].data_type, store.shape(name)))
    graph = helper.make_graph(nodes, g.name or "graph", inputs, list(g.output), inits)
    m = helper.make_model(graph, opset_imports=list(model.opset_import), functions=list(model.functions),
                          ir_version=max(model.ir_version, 4))
    return m


def _shapes_of(model: onnx.ModelProto) -> dict[str, tuple[tuple[int | None, ...], int]]:
    out: dict[str, tuple[tuple[int | None, ...], int]] = {}
    g = model.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        if vi.type.HasField("sequence_type"):
            out[vi.name] = (*SEQUENCE, vi.type.sequence_type.elem_type.tensor_type.elem_type)
            continue
        dims = _dims(vi)
        if dims is None:
            continue
        out[vi.name] = (tuple(d if isinstance(d, int) else None for d in dims), vi.type.tensor_type.elem_type)
    for t in g.initializer:
        out[t.name] = (tuple(int(d) for d in t.dims), t.data_type)
    return out


def _infer(model: onnx.ModelProto) -> dict[str, tuple[tuple[int | None, ...], int]]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
    except Exception as exc:  # inference errors mean the graph is inconsistent
        raise OnnxModelError(f"onnx shape inference failed: {type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
    return _shapes_of(inferred)


def concrete(shape: tuple[int | None, ...] | None) -> tuple[int, ...] | None:
    """The shape as ints, or None when some dim is unknown."""
    if shape is None or any(d is None for d in shape):
        return None
    return tuple(int(d) for d in shape)  # type: ignore[arg-type]


def fold_and_infer(model: onnx.ModelProto, store: TensorStore, input_shapes: Mapping[str, tuple[int, ...]]
                   ) -> tuple[dict[str, np.ndarray], set[int], dict[str, tuple[tuple[int | None, ...], int]]]:
    """Alternate shape inference and folding until nothing more folds."""
    known = _initial_known(model, store)
    folded: set[int] = set()
    shapes: dict[str, tuple[tuple[int | None, ...], int]] = {}
    for _ in range(8):
        shapes = _infer(_inference_model(model, store, input_shapes, known, folded))
        if not _fold_pass(model, store, known, folded, shapes):
            break
    return known, folded, shapes


def _fold_pass(model: onnx.ModelProto, store: TensorStore, known: dict[str, np.ndarray], folded: set[int],
               shapes: Mapping[str, tuple[tuple[int | None, ...], int]]) -> bool:
    changed = False
    for i, node in enumerate(model.graph.node):
        if i in folded or not foldable(node):
            continue
        if node.op_type in ("Shape", "Size") and node.domain in ("", "ai.onnx"):
            shape = concrete(shapes.get(node.input[0], (None, 0))[0])
            if shape is None:
                continue
            value = shape_of(node, shape) if node.op_type == "Shape" else np.asarray(
                int(np.prod(shape, dtype=np.int64)), dtype=np.int64)
            known[node.output[0]] = value
            folded.add(i)
            changed = True
            continue
        names = [n for n in node.input if n]
        if any(n not in known for n in names):
            continue
        try:
            outs = fold_node(node, known, model.opset_import, model.functions)
        except Exception:  # an op the reference evaluator cannot run stays an op
            continue
        if any(o.size > FOLD_LIMIT for o in outs):
            continue
        for name, value in zip(node.output, outs):
            if name:
                known[name] = value
        folded.add(i)
        changed = True
    return changed


def probe_shapes(model: onnx.ModelProto, store: TensorStore, input_shapes: Mapping[str, tuple[int, ...]],
                 names: Sequence[str]) -> dict[str, tuple[tuple[int | None, ...], int]]:
    """Shapes that onnx inference left open (function ops, custom domains), read off one
    onnxruntime run on zero inputs. Models with external data are not probed.
    """
    if any(store.external(t.name) for t in model.graph.initializer):
        return {}
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.value_info[:]
    for vi in probe.graph.input:
        if vi.name in input_shapes:
            vi.CopyFrom(helper.make_tensor_value_info(vi.name, vi.type.tensor_type.elem_type, input_shapes[vi.name]))
    outputs = {o.name for o in probe.graph.output}
    probe.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in names if n not in outputs)
    feeds = {vi.name: np.zeros(input_shapes[vi.name], dtype=np_dtype(vi.type.tensor_type.elem_type))
             for vi in probe.graph.input if vi.name in input_shapes}
    try:
        opts = ort.SessionOptions()
        opts.log_severity_level = 4
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        sess = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        wanted = [o.name for o in sess.get_outputs()]
        values = sess.run(None, feeds)
    except Exception:  # no probe possible: the caller reports the missing shapes
        return {}
    out: dict[str, tuple[tuple[int | None, ...], int]] = {}
    for name, value in zip(wanted, values):
        if isinstance(value, list):  # an ONNX sequence (SplitToSequence and the like)
            first = np.asarray(value[0]).dtype if value else np.dtype(np.float32)
            out[name] = (*SEQUENCE, helper.np_dtype_to_tensor_dtype(first))
            continue
        arr = np.asarray(value)
        out[name] = (tuple(int(d) for d in arr.shape), helper.np_dtype_to_tensor_dtype(arr.dtype))
    return out


def symbolic_axes(model: onnx.ModelProto) -> dict[str, dict[int, str | None]]:
    """Value -> {axis: dim name or None} for axes of symbolic or unknown size under the model's own
    input dims.
    """
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
    except Exception:  # this is only a hint for rewriting shape constants
        return {}
    out: dict[str, dict[int, str | None]] = {}
    g = inferred.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        dims = _dims(vi)
        if dims is not None:
            axes = {k: (d if isinstance(d, str) else None) for k, d in enumerate(dims)
                    if not (isinstance(d, int) and d > 0)}
            if axes:
                out[vi.name] = axes
    return out


def has_symbolic_inputs(model: onnx.ModelProto) -> bool:
    """Whether some graph input has a symbolic or unknown dim."""
    inits = {t.name for t in model.graph.initializer}
    for vi in model.graph.input:
        dims = _dims(vi)
        if vi.name not in inits and dims is not None and any(not (isinstance(d, int) and d > 0) for d in dims):
            return True
    return False
