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
from prunec.frontends.onnx_shapes import (
    concrete,
    fold_and_infer,
    has_symbolic_inputs,
    probe_shapes,
    resolve_input_shapes,
    symbolic_axes,
)
from prunec.frontends.onnx_tensors import TensorStore, has_subgraph, np_dtype
from prunec.ir.graph import Graph, OpNode, Value, ValueKind

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
        check_opset(model)
        return model, None
    path = os.fspath(model)
    if not os.path.exists(path):
        raise OnnxModelError(f"ONNX file {path!r} does not exist")
    if os.path.isdir(path):
        raise OnnxModelError(f"{path!r} is a directory; pass the path of an .onnx file")
    try:
        proto = onnx.load(path, load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise OnnxModelError(f"{path!r} is not a readable ONNX model ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else 'parse error'}); the file may be "
                             "truncated, corrupt, or not an ONNX file") from exc
    if not proto.graph.node:
        raise OnnxModelError(f"{path!r} holds no ONNX graph (no nodes); the file may be truncated, corrupt, "
                             "or not an ONNX file")
    check_opset(proto)
    return proto, os.path.dirname(os.path.abspath(path))


MIN_OPSET = 7
"""Before opset 7, Add/Mul/... broadcast by `broadcast`/`axis` attributes, which the rules do not model."""


def check_opset(proto: onnx.ModelProto) -> None:
    """The default-domain opset must be one the rules and the installed onnx know."""
    newest = onnx.defs.onnx_opset_version()
    for o in proto.opset_import:
        if o.domain not in ("", "ai.onnx"):
            continue
        if o.version > newest:
            raise OnnxModelError(f"the model imports ONNX opset {o.version}, newer than this onnx "
                                 f"{onnx.__version__} knows (up to {newest}); upgrade onnx and onnxruntime, or "
                                 f"export the model with opset_version <= {newest}")
        if o.version < MIN_OPSET:
            raise OnnxModelError(f"the model imports ONNX opset {o.version}; prunec reads opsets {MIN_OPSET} to "
                                 f"{newest} (older ones broadcast by attributes). Convert it first: "
                                 "onnx.version_converter.convert_version(model, 13)")


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
    except Exception:  # custom ops without a registered schema
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
        shape = concrete(entry[0]) if entry else None
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
    except Exception:  # undefined element types
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
               if o and concrete(shapes.get(o, (None, 0))[0]) is None]
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
    symbolic = symbolic_axes(proto) if has_symbolic_inputs(proto) else {}
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


# -- ignore= -----------------------------------------------------------------------------------

def match_nodes(source: OnnxSource, patterns: Iterable[str]) -> dict[str, list[str]]:
    """Pattern -> IR op names it selects: an exact node name, a glob ('/fc/*'), or the name of an
    initializer the node reads. Raises InputError for a pattern that selects nothing.
    """
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
