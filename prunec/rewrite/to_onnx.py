"""Rewrite an ONNX model into a structurally smaller one (the only module that imports
onnx_graphsurgeon), and save it.

1. Slice every initializer that loses channels (original numbering -> kept indices).
2. Make every size-carrying input agree with the new shapes: Reshape/Expand shape tensors, Slice
   bounds, Split sizes, Gather positions, Resize sizes (and attributes: Conv `group`,
   GroupNormalization `num_groups`, Split `split`). Shape arithmetic that the exporter left in the
   graph (Shape -> Gather -> Div -> Slice) is re-evaluated for the pruned shapes; where it already
   gives the right value it stays (the model keeps its dynamic batch), elsewhere the input is
   replaced by a constant. Folded tensors feeding ordinary data ports (an attention scale
   computed from a head size) keep their original values.
3. Drop dead nodes, clear stale shapes, run onnx shape inference and the checker.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from prunec.analysis.result import Analysis
from prunec.errors import OnnxModelError
from prunec.frontends.onnx_graph import OnnxSource, input_ports
from prunec.frontends.onnx_tensors import fold_node, shape_of
from prunec.ir.graph import OpNode


@dataclass
class NodeContext:
    """What a resizer sees: the IR node, its old and new shapes, the kept indices."""

    op: OpNode
    ports: dict[str, str]
    """Port -> value name of the node's inputs."""
    outputs: list[str]
    old: Mapping[str, tuple[int, ...]]
    new: Mapping[str, tuple[int, ...]]
    kept: Callable[[str, int], np.ndarray]
    known: Mapping[str, np.ndarray]
    symbolic: Mapping[str, Mapping[int, str | None]]

    def changed(self, value: str) -> bool:
        """Whether `value` loses entries on some axis."""
        return self.old[value] != self.new[value]


@dataclass
class Edit:
    """Required values of size-carrying inputs (by port) and attribute updates (None deletes)."""

    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, object] = field(default_factory=dict)
    constant: dict[str, Callable[[np.ndarray], np.ndarray]] = field(default_factory=dict)
    """Per port: how to write the required value when it must become a constant (e.g. keep the
    dynamic batch of a reshape as 0 or -1)."""


Resizer = Callable[[NodeContext], Edit]
RESIZERS: dict[str, Resizer] = {}


def register_resizer(*keys: str) -> Callable[[Resizer], Resizer]:
    """Decorator: compute the size-carrying inputs/attributes of ops after pruning."""
    def wrap(fn: Resizer) -> Resizer:
        for k in keys:
            RESIZERS[k] = fn
        return fn
    return wrap


def _orig(ctx: NodeContext, port: str) -> np.ndarray | None:
    name = ctx.ports.get(port)
    return None if name is None or name not in ctx.known else np.asarray(ctx.known[name])


@register_resizer("onnx::Reshape")
def _reshape(ctx: NodeContext) -> Edit:
    shape = _orig(ctx, "shape")
    y = ctx.outputs[0]
    if shape is None or not ctx.changed(y):
        return Edit()
    new = shape.astype(np.int64).copy()
    for i, (before, after) in enumerate(zip(ctx.old[y], ctx.new[y])):
        if shape[i] not in (0, -1) and before != after:
            new[i] = after
    return Edit({"shape": new}, constant={"shape": lambda value: _keep_dynamic(ctx, value.copy())})


def _keep_dynamic(ctx: NodeContext, new: np.ndarray) -> np.ndarray:
    """Write the dims that are symbolic in the original model (a dynamic batch) as 0 (copy the
    same-named input dim) or -1 (inferred), so the pruned model keeps accepting other sizes.
    """
    x, y = ctx.ports["data"], ctx.outputs[0]
    out_dyn, in_dyn = ctx.symbolic.get(y, {}), ctx.symbolic.get(x, {})
    rest = []
    for i, name in sorted(out_dyn.items()):
        if i >= len(new) or new[i] in (0, -1):
            continue
        if name is not None and in_dyn.get(i) == name and not int(ctx.op.attrs.get("allowzero", 0) or 0):
            new[i] = 0  # the same symbolic dim at the same position of the input
        else:
            rest.append(i)
    if len(rest) == 1 and -1 not in new:
        new[rest[0]] = -1
    return new


@register_resizer("onnx::Expand")
def _expand(ctx: NodeContext) -> Edit:
    shape = _orig(ctx, "shape")
    y = ctx.outputs[0]
    if shape is None or not ctx.changed(y):
        return Edit()
    new = shape.astype(np.int64).copy()
    lead = len(ctx.new[y]) - len(new)
    for j in range(len(new)):
        if new[j] != 1 and ctx.old[y][j + lead] != ctx.new[y][j + lead]:
            new[j] = ctx.new[y][j + lead]
    return Edit({"shape": new})


@register_resizer("onnx::Slice")
def _slice(ctx: NodeContext) -> Edit:
    x, y = ctx.ports["data"], ctx.outputs[0]
    starts, ends = _orig(ctx, "starts"), _orig(ctx, "ends")
    if starts is None or ends is None or not ctx.changed(x):
        return Edit()
    axes = _orig(ctx, "axes")
    axes_l = [int(a) % len(ctx.old[x]) for a in (axes if axes is not None else range(len(starts)))]
    new_s, new_e = starts.astype(np.int64).copy(), ends.astype(np.int64).copy()
    for j, axis in enumerate(axes_l):
        n, n_new = ctx.old[x][axis], ctx.new[x][axis]
        if n == n_new:
            continue
        s = int(starts[j])
        start = min(max(s + n if s < 0 else s, 0), n)
        kept = ctx.kept(x, axis)
        s_new = int(np.searchsorted(kept, start))
        e_new = s_new + ctx.new[y][axis]
        new_s[j] = s_new - n_new if s < 0 else s_new
        e = int(ends[j])
        if e < 0 and e_new < n_new:
            new_e[j] = e_new - n_new
        elif e > n and e_new == n_new:
            new_e[j] = e  # 'to the end' sentinel still means the end
        else:
            new_e[j] = e_new
    return Edit({"starts": new_s, "ends": new_e})


@register_resizer("onnx::Split")
def _split(ctx: NodeContext) -> Edit:
    x = ctx.ports["input"]
    axis = int(ctx.op.attrs.get("axis", 0) or 0) % len(ctx.old[x])
    sizes = np.asarray([ctx.new[o][axis] for o in ctx.outputs], dtype=np.int64)
    old_sizes = [ctx.old[o][axis] for o in ctx.outputs]
    if list(sizes) == old_sizes:
        return Edit()
    if int(ctx.op.attrs.get("opset", 13)) < 13:
        return Edit(attrs={"split": [int(s) for s in sizes]})
    return Edit({"split": sizes}, {"num_outputs": None} if "num_outputs" in ctx.op.attrs else {})


@register_resizer("onnx::Gather")
def _gather(ctx: NodeContext) -> Edit:
    x = ctx.ports["data"]
    idx = _orig(ctx, "indices")
    axis = int(ctx.op.attrs.get("axis", 0) or 0) % len(ctx.old[x])
    if idx is None or ctx.old[x][axis] == ctx.new[x][axis]:
        return Edit()
    n = ctx.old[x][axis]
    kept = ctx.kept(x, axis)
    return Edit({"indices": np.searchsorted(kept, idx % n).astype(idx.dtype)})


@register_resizer("onnx::Resize")
def _resize(ctx: NodeContext) -> Edit:
    sizes = _orig(ctx, "sizes")
    y = ctx.outputs[0]
    if sizes is None or sizes.size == 0 or not ctx.changed(y):
        return Edit()
    new = sizes.astype(np.int64).copy()
    for i, (before, after) in enumerate(zip(ctx.old[y], ctx.new[y])):
        if before != after and i < len(new):
            new[i] = after
    return Edit({"sizes": new})


@register_resizer("onnx::Conv", "onnx::ConvTranspose")
def _conv(ctx: NodeContext) -> Edit:
    groups = int(ctx.op.attrs.get("group", 1) or 1)
    if groups == 1:
        return Edit()
    w = ctx.ports["W"]
    transposed = ctx.op.op == "onnx::ConvTranspose"
    channels = ctx.new[ctx.outputs[0]][1] if transposed else ctx.new[ctx.ports["X"]][1]
    per_group = ctx.new[w][1]
    new_groups = channels // per_group if per_group else groups
    return Edit(attrs={"group": new_groups} if new_groups != groups else {})


@register_resizer("onnx::GroupNormalization")
def _group_norm(ctx: NodeContext) -> Edit:
    x = ctx.ports["X"]
    groups = int(ctx.op.attrs.get("num_groups", 1) or 1)
    per = ctx.old[x][1] // groups
    new_groups = ctx.new[x][1] // per if per else groups
    return Edit(attrs={"num_groups": new_groups} if new_groups != groups else {})


@register_resizer("onnx::Attention", "com.microsoft::MultiHeadAttention")
def _attention(ctx: NodeContext) -> Edit:
    q, k = (v for _, v in list(ctx.ports.items())[:2])
    if len(ctx.old[q]) != 3:
        return Edit()
    if ctx.op.op == "onnx::Attention":
        names = {"q_num_heads": q, "kv_num_heads": k}
    else:
        names = {"num_heads": q}
    attrs: dict[str, object] = {}
    for attr, value in names.items():
        heads = int(ctx.op.attrs.get(attr, 0) or 0)
        size = ctx.old[value][-1] // heads if heads else 0
        if size and ctx.new[value][-1] != ctx.old[value][-1]:
            attrs[attr] = ctx.new[value][-1] // size
    return Edit(attrs=attrs)


# -- re-evaluating the folded shape arithmetic for the pruned shapes ---------------------------

def refold(source: OnnxSource, new_shapes: Mapping[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Values the folded tensors take in the pruned model (only those that change)."""
    values = dict(source.known)
    changed: dict[str, np.ndarray] = {}
    for node in source.folded:
        if node.op_type in ("Shape", "Size") and node.input[0] not in source.known:
            name = node.input[0]
            if name not in new_shapes or new_shapes[name] == source.graph.value(name).shape:
                continue
            shape = new_shapes[name]
            out = shape_of(node, shape) if node.op_type == "Shape" else np.asarray(
                int(np.prod(shape, dtype=np.int64)), dtype=np.int64)
            values[node.output[0]] = changed[node.output[0]] = out
            continue
        if not any(n in changed for n in node.input if n):
            continue
        outs = fold_node(node, values, source.opsets, source.model.functions)
        for name, value in zip(node.output, outs):
            if name:
                values[name] = changed[name] = value
    return changed


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and bool(np.array_equal(a, b))


def _constant_node(graph: gs.Graph, name: str, value: np.ndarray) -> gs.Variable:
    """A Constant node holding `value` (a node, not an initializer: it is not a parameter)."""
    out = gs.Variable(name, dtype=value.dtype, shape=value.shape)
    node = gs.Node("Constant", name=f"{name}_node", attrs={"value": gs.Constant(f"{name}_value", value)},
                   outputs=[out])
    graph.nodes.append(node)
    return out


def rewrite_onnx(analysis: Analysis, keep: np.ndarray) -> tuple[onnx.ModelProto, tuple[str, ...]]:
    """The pruned model (initializers sliced, size constants rewritten, checked) and notes."""
    source: OnnxSource = analysis.source
    graph = gs.import_onnx(source.model)
    if len(graph.nodes) != len(source.model.graph.node):
        raise OnnxModelError("onnx-graphsurgeon imported a different number of nodes than the model holds")
    tensors = graph.tensors()
    for param, axes in analysis.state_changes(keep).items():
        values = source.tensors.array(param)
        for axis, kept in sorted(axes.items()):
            values = np.take(values, kept, axis=axis)
        tensors[param].values = np.ascontiguousarray(values)
        tensors[param].data_location = None  # the sliced values are inline until saved

    new_shapes = analysis.new_shapes(keep)
    old_shapes = {v.name: v.shape for v in analysis.graph.values()}
    refolded = refold(source, new_shapes)
    notes: list[str] = []
    replaced = 0
    for op in analysis.graph.ops():
        gnode = graph.nodes[source.node_index[op.name]]
        ports = {p: v.name for p, v in analysis.graph.inputs(op)}
        ctx = NodeContext(op, ports, [v.name for v in analysis.graph.outputs(op)], old_shapes, new_shapes,
                          lambda v, k: analysis.kept_indices(keep, v, k), source.known, source.symbolic)
        resizer = RESIZERS.get(op.op)
        edit = resizer(ctx) if resizer is not None else Edit()
        for name, value in edit.attrs.items():
            if value is None:
                gnode.attrs.pop(name, None)
            else:
                gnode.attrs[name] = value
        position = {p: i for i, p in enumerate(input_ports(source.model.graph.node[source.node_index[op.name]],
                                                           int(op.attrs.get("opset", 1) or 1)))}
        for port, vname in ports.items():
            if vname not in source.known:
                continue
            original = np.asarray(source.known[vname])
            required = np.asarray(edit.inputs.get(port, original)).astype(original.dtype)
            if _same(refolded.get(vname, original), required):
                continue
            replaced += 1
            if port in edit.constant:
                required = edit.constant[port](required)
            gnode.inputs[position[port]] = _constant_node(graph, f"{vname}__prunec{replaced}", required)
        for port, value in edit.inputs.items():
            if port not in ports:  # a size input the node did not have (Split sizes after num_outputs)
                replaced += 1
                gnode.inputs.append(_constant_node(graph, f"{op.name}__{port}__prunec{replaced}", np.asarray(value)))
    if replaced:
        notes.append(f"{replaced} size-carrying input(s) rewritten as constants for the pruned shapes")
    return _finish(graph, source), tuple(notes)


def _finish(graph: gs.Graph, source: OnnxSource) -> onnx.ModelProto:
    graph.cleanup(remove_unused_graph_inputs=False).toposort()
    model = gs.export_onnx(graph)
    del model.graph.value_info[:]  # stale shapes of the original; shape inference below redoes them
    model.ir_version = source.model.ir_version
    model.producer_name = source.model.producer_name or "prunec"
    del model.metadata_props[:]
    model.metadata_props.extend(source.model.metadata_props)
    if not any(onnx.external_data_helper.uses_external_data(t) for t in model.graph.initializer):
        try:
            onnx.checker.check_model(model)
        except onnx.checker.ValidationError as exc:
            if not _passes_checker(source.model):
                return model  # the original breaks the same rules: nothing prunec can be held to
            raise OnnxModelError(f"the pruned model fails onnx.checker: {str(exc).splitlines()[0]}. This is a "
                                 "prunec bug; please report it with the model.") from exc
    try:
        return onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False)
    except Exception:  # value_info is optional; the model itself is complete
        return model


def _passes_checker(model: onnx.ModelProto) -> bool:
    try:
        onnx.checker.check_model(model)
        return True
    except onnx.checker.ValidationError:
        return False
