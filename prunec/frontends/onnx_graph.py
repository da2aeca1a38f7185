"""ONNX frontend: load an .onnx file (or ModelProto) into prunec's IR.

Floating-point initializers of rank >= 1 are the parameters (`Value.param` = initializer name);
graph inputs are INPUT values with concrete shapes (symbolic dims resolved from the batch size or
the shapes the caller gives); everything computable before the model runs (Constant nodes, shape
arithmetic on `Shape` outputs, integer initializers) is folded: those tensors become CONSTANT values
and, where small, node attributes under their schema input name (`Reshape.shape`, `Slice.starts`,
`Split.split`, ...). Shapes come from onnx shape inference on the folded graph. Op keys are
'onnx::Conv', or 'domain::Op' for custom domains.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper

from prunec.errors import InputError, IRError, OnnxModelError
from prunec.frontends.onnx_tensors import TensorStore, fold_node, foldable, has_subgraph, np_dtype, shape_of
from prunec.ir.graph import Graph, OpNode, Value, ValueKind

FOLD_LIMIT = 1 << 22
"""Largest folded tensor (elements) kept in memory; bigger ones stay ops of the graph."""
ATTR_LIMIT = 4096
"""Folded inputs up to this many elements are also given to rules as attributes."""


@dataclass
class OnnxSource:
    """What the ONNX frontend hands to analysis, rewrite and verification."""

    model: onnx.ModelProto
    """The model as loaded (external data not loaded; read through `tensors`)."""
    path: str | None
    graph: Graph
    tensors: TensorStore
    input_shapes: dict[str, tuple[int, ...]]
    """Concrete shape of every graph input used for the analysis."""
    known: dict[str, np.ndarray]
    """Values of every folded tensor (Constant outputs, shape arithmetic, integer initializers)."""
    folded: list[onnx.NodeProto]
    """Nodes evaluated at analysis time, in graph order."""
    node_index: dict[str, int]
    """IR op name -> position of its node in `model.graph.node`."""
    symbolic: dict[str, dict[int, str | None]] = field(default_factory=dict)
    """Value -> {axis: dim name, or None when unknown} for the axes whose size is not fixed in the
    original model (dynamic batch, sequence)."""

    @property
    def opsets(self) -> list[onnx.OperatorSetIdProto]:
        """The model's opset imports."""
        return list(self.model.opset_import)


# -- loading -----------------------------------------------------------------------------------

def load_model(model: str | os.PathLike[str] | onnx.ModelProto) -> tuple[onnx.ModelProto, str | None]:
    """Read an ONNX model without loading external data; raise OnnxModelError with the cause."""
    if isinstance(model, onnx.ModelProto):
        return model, None
    path = os.fspath(model)
    if not os.path.exists(path):
        raise OnnxModelError(f"ONNX file {path!r} does not exist")
    if os.path.isdir(path):
        raise OnnxModelError(f"{path!r} is a directory; pass the path of an .onnx file")
    try:
        proto = onnx.load(path, load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and friends
        raise OnnxModelError(f"{path!r} is not a readable ONNX model ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else 'parse error'}); the file may be "
                             "truncated, corrupt, or not an ONNX file") from exc
    if not proto.graph.node:
        raise OnnxModelError(f"{path!r} holds no ONNX graph (no nodes); the file may be truncated, corrupt, "
                             "or not an ONNX file")
    return proto, os.path.dirname(os.path.abspath(path))


def _dims(vi: onnx.ValueInfoProto) -> list[int | str | None] | None:
    t = vi.type.tensor_type
    if not vi.type.HasField("tensor_type") or not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]


def resolve_input_shapes(model: onnx.ModelProto, given: Mapping[str, Sequence[int]] | None, batch: int
                         ) -> dict[str, tuple[int, ...]]:
    """Concrete shapes of the graph inputs: given ones, else the declared dims with a symbolic
    first axis set to `batch`. Any other symbolic dim needs a given shape."""
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
    (no data needed), concrete input shapes: what onnx shape inference sees."""
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
    except Exception as exc:  # noqa: BLE001 - inference errors mean the graph is inconsistent
        raise OnnxModelError(f"onnx shape inference failed: {type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
    return _shapes_of(inferred)


def _concrete(shape: tuple[int | None, ...] | None) -> tuple[int, ...] | None:
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
            shape = _concrete(shapes.get(node.input[0], (None, 0))[0])
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
        except Exception:  # noqa: BLE001, S112 - an op the reference evaluator cannot run stays an op
            continue
        if any(o.size > FOLD_LIMIT for o in outs):
            continue
        for name, value in zip([o for o in node.output], outs):
            if name:
                known[name] = value
        folded.add(i)
        changed = True
    return changed


def probe_shapes(model: onnx.ModelProto, store: TensorStore, input_shapes: Mapping[str, tuple[int, ...]],
                 names: Sequence[str]) -> dict[str, tuple[tuple[int | None, ...], int]]:
    """Shapes that onnx inference left open (function ops, custom domains), read off one
    onnxruntime run on zero inputs. Models with external data are not probed."""
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
    except Exception:  # noqa: BLE001 - no probe possible: the caller reports the missing shapes
        return {}
    out: dict[str, tuple[tuple[int | None, ...], int]] = {}
    for name, value in zip(wanted, values):
        arr = np.asarray(value)
        out[name] = (tuple(int(d) for d in arr.shape), helper.np_dtype_to_tensor_dtype(arr.dtype))
    return out


def symbolic_axes(model: onnx.ModelProto) -> dict[str, dict[int, str | None]]:
    """Value -> {axis: dim name or None} for axes of symbolic or unknown size under the model's own
    input dims."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001 - this is only a hint for rewriting shape constants
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


# -- building the IR ---------------------------------------------------------------------------

def op_key(node: onnx.NodeProto) -> str:
    """'onnx::Conv' for the default domain, 'com.microsoft::Attention' for others."""
    domain = node.domain if node.domain not in ("", "ai.onnx") else "onnx"
    return f"{domain}::{node.op_type}"


def _opset_of(model: onnx.ModelProto, domain: str) -> int:
    for o in model.opset_import:
        if o.domain == domain or (o.domain in ("", "ai.onnx") and domain in ("", "ai.onnx")):
            return int(o.version)
    return 1


def input_ports(node: onnx.NodeProto, opset: int) -> list[str]:
    """Port name of every input position: schema names, variadic ones as 'name.j'."""
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, node.domain)
    except Exception:  # noqa: BLE001 - custom ops without a registered schema
        return [f"input{i}" for i in range(len(node.input))]
    formal = list(schema.inputs)
    ports: list[str] = []
    for i in range(len(node.input)):
        if not formal:
            ports.append(f"input{i}")
        elif i < len(formal) and formal[i].option != onnx.defs.OpSchema.FormalParameterOption.Variadic:
            ports.append(formal[i].name)
        else:
            last = formal[min(i, len(formal) - 1)]
            ports.append(f"{last.name}.{i - (len(formal) - 1) if i >= len(formal) - 1 else 0}")
    return ports


def _attr_value(value: np.ndarray) -> object:
    arr = np.asarray(value)
    if arr.dtype.kind in "iub" and arr.ndim <= 1:
        return int(arr) if arr.ndim == 0 else tuple(int(x) for x in arr)
    if arr.dtype.kind == "f" and arr.size == 1:
        return float(arr.reshape(()))
    return arr


def _node_attrs(node: onnx.NodeProto) -> dict[str, object]:
    attrs: dict[str, object] = {}
    for a in node.attribute:
        if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            continue
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        elif isinstance(v, list):
            v = tuple(x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in v)
        elif isinstance(v, onnx.TensorProto):
            v = onnx.numpy_helper.to_array(v)
        attrs[a.name] = v
    return attrs


def _outer_names(graph: onnx.GraphProto) -> list[str]:
    """Names a subgraph reads from enclosing scopes (implicit inputs of If/Loop/Scan)."""
    defined = {vi.name for vi in graph.input} | {t.name for t in graph.initializer}
    used: list[str] = []
    for n in graph.node:
        for a in n.attribute:
            for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                used += [x for x in _outer_names(sub) if x not in defined]
        used += [x for x in n.input if x and x not in defined]
        defined.update(n.output)
    used += [o.name for o in graph.output if o.name not in defined]
    return list(dict.fromkeys(used))


class _Builder:
    def __init__(self, model: onnx.ModelProto, store: TensorStore, known: Mapping[str, np.ndarray],
                 shapes: Mapping[str, tuple[tuple[int | None, ...], int]],
                 input_shapes: Mapping[str, tuple[int, ...]]) -> None:
        self.model, self.store, self.known, self.shapes = model, store, known, shapes
        self.input_shapes = input_shapes
        self.graph = Graph()
        self.node_index: dict[str, int] = {}
        self.unknown: list[str] = []

    def value(self, name: str, producer_missing_ok: bool = False) -> None:
        g = self.graph
        try:
            g.value(name)
            return
        except IRError:
            pass
        if name in self.input_shapes:
            dtype = _elem_dtype(self.shapes.get(name, ((), onnx.TensorProto.FLOAT))[1])
            g.add_value(Value(name, self.input_shapes[name], dtype, ValueKind.INPUT))
            g.graph_inputs.append(name)
        elif name in self.store and self.store.is_param(name):
            dtype = str(np_dtype(self.store.protos[name].data_type))
            g.add_value(Value(name, self.store.shape(name), dtype, ValueKind.PARAM, param=name))
        elif name in self.known:
            arr = self.known[name]
            g.add_value(Value(name, tuple(int(d) for d in arr.shape), str(arr.dtype), ValueKind.CONSTANT))
        elif producer_missing_ok:
            return
        else:
            raise OnnxModelError(f"tensor {name!r} is read before any node produces it; the graph is not "
                                 "topologically sorted or refers to a missing input")

    def activation(self, name: str) -> None:
        entry = self.shapes.get(name)
        shape = _concrete(entry[0]) if entry else None
        if shape is None:
            self.unknown.append(name)
            shape = ()
        self.graph.add_value(Value(name, shape, _elem_dtype(entry[1]) if entry else "float32"))

    def add(self, index: int, node: onnx.NodeProto, used_names: set[str]) -> None:
        name = _unique(node.name or f"{node.op_type}_{index}", used_names)
        opset = _opset_of(self.model, node.domain)
        ports = input_ports(node, opset)
        attrs = _node_attrs(node)
        attrs["opset"] = opset
        inputs: list[tuple[str, str]] = []
        for port, vname in zip(ports, node.input):
            if not vname:
                continue
            self.value(vname)
            inputs.append((port, vname))
            if vname in self.known and self.known[vname].size <= ATTR_LIMIT and port not in attrs:
                attrs[port] = _attr_value(self.known[vname])
        if has_subgraph(node):
            outer: list[str] = []
            for a in node.attribute:
                for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                    outer += _outer_names(sub)
            for j, vname in enumerate(dict.fromkeys(outer)):
                self.value(vname, producer_missing_ok=True)
                if self._has(vname):
                    inputs.append((f"implicit.{j}", vname))
        outputs = [o for o in node.output if o]
        for o in outputs:
            self.activation(o)
        self.graph.add_op(OpNode(name, op_key(node), attrs, origin=node.name or name, module_type=node.op_type),
                          inputs, outputs)
        self.node_index[name] = index

    def _has(self, name: str) -> bool:
        try:
            self.graph.value(name)
            return True
        except IRError:
            return False


def _elem_dtype(elem: int) -> str:
    try:
        return str(np_dtype(elem))
    except Exception:  # noqa: BLE001 - undefined element types
        return "unknown"


def _unique(name: str, used: set[str]) -> str:
    out, k = name, 1
    while out in used:
        out = f"{name}_{k}"
        k += 1
    used.add(out)
    return out


def load(model: str | os.PathLike[str] | onnx.ModelProto, *, input_shapes: Mapping[str, Sequence[int]] | None = None,
         batch: int = 1) -> OnnxSource:
    """Load `model` into the IR; raise OnnxModelError / InputError naming the problem."""
    proto, base_dir = load_model(model)
    if batch < 1:
        raise InputError(f"batch must be a positive integer, got {batch}")
    store = TensorStore(proto.graph.initializer, base_dir)
    shapes_in = resolve_input_shapes(proto, input_shapes, batch)
    known, folded_idx, shapes = fold_and_infer(proto, store, shapes_in)
    missing = [o for i, n in enumerate(proto.graph.node) if i not in folded_idx for o in n.output
               if o and _concrete(shapes.get(o, (None, 0))[0]) is None]
    if missing:
        shapes = {**shapes, **probe_shapes(proto, store, shapes_in, missing)}
    builder = _Builder(proto, store, known, shapes, shapes_in)
    try:
        _build(builder, proto, folded_idx)
    except IRError as exc:
        raise OnnxModelError(f"the ONNX graph is inconsistent: {exc}; check it with onnx.checker") from exc
    if builder.unknown:
        raise OnnxModelError(
            f"onnx shape inference could not find a static shape for {len(builder.unknown)} tensor(s), "
            f"first {builder.unknown[0]!r}; prunec needs static shapes. Give concrete input shapes "
            "(--input-shape), or run onnxsim / onnxruntime's symbolic shape inference on the model first.")
    builder.graph.lint()
    symbolic = symbolic_axes(proto) if _has_symbolic_inputs(proto) else {}
    folded = [n for i, n in enumerate(proto.graph.node) if i in folded_idx]
    path = None if isinstance(model, onnx.ModelProto) else os.fspath(model)
    return OnnxSource(proto, path, builder.graph, store, dict(shapes_in), dict(known), folded, builder.node_index,
                      symbolic)


def _build(builder: _Builder, proto: onnx.ModelProto, folded: set[int]) -> None:
    used: set[str] = set()
    for name in builder.input_shapes:
        builder.value(name)
    for i, node in enumerate(proto.graph.node):
        if i not in folded:
            builder.add(i, node, used)
    for out in proto.graph.output:
        builder.value(out.name, producer_missing_ok=True)
        builder.graph.graph_outputs.append(out.name)


def _has_symbolic_inputs(model: onnx.ModelProto) -> bool:
    inits = {t.name for t in model.graph.initializer}
    for vi in model.graph.input:
        dims = _dims(vi)
        if vi.name not in inits and dims is not None and any(not (isinstance(d, int) and d > 0) for d in dims):
            return True
    return False


# -- ignore= -----------------------------------------------------------------------------------

def match_nodes(source: OnnxSource, patterns: Iterable[str]) -> dict[str, list[str]]:
    """Pattern -> IR op names it selects: an exact node name, a glob ('/fc/*'), or the name of an
    initializer the node reads. Raises InputError for a pattern that selects nothing."""
    g = source.graph
    out: dict[str, list[str]] = {}
    names = [op.name for op in g.ops()]
    for pat in patterns:
        hits = [op.name for op in g.ops() if op.name == pat or op.origin == pat
                or fnmatch.fnmatchcase(op.name, pat)
                or any(v.param == pat for _, v in g.inputs(op))]
        if not hits:
            import difflib

            close = difflib.get_close_matches(pat, names + [v.param for v in g.state_values() if v.param], n=3)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise InputError(f"ignore= names {pat!r}, which matches no node or initializer of the model{hint}")
        out[pat] = hits
    return out
