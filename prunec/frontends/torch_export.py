"""Torch frontend: trace an nn.Module with torch.export (ATen level) into prunec's IR.

ATen is a finite op vocabulary, so the rule table can cover it; torch.export handles Python
control flow, keyword inputs and shared modules by running the model on fake tensors, and names
every lifted parameter by its state_dict key. Nothing here mutates the user's model: training
flags are restored on exit.
"""

from __future__ import annotations

import contextlib
import operator
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx

from prunec.errors import InputError, TraceError
from prunec.frontends.autograd_calls import AutogradCall, add_region, record_autograd_calls, regions
from prunec.frontends.identity_cache import cached_by_identity
from prunec.frontends.model_index import ModelIndex
from prunec.frontends.python_state import python_state_kept
from prunec.inputs import ExampleInputs
from prunec.ir.graph import Graph, OpNode, Value, ValueKind


@dataclass
class TracedTorch:
    """What the torch frontend hands to analysis and rewrite."""

    graph: Graph
    exported: torch.export.ExportedProgram
    """The traced program: an ExportedProgram, or a RecordedProgram (same `.module()` contract)."""
    inputs: ExampleInputs
    fx_to_value: dict[str, str] = field(default_factory=dict)
    """fx node name -> IR value name (tied placeholders share one value); filled by the export
    frontend while it builds the IR (the recorded frontend names values as their fx nodes)."""

    @property
    def tracer(self) -> str:
        """Which tracer made the program: 'record' or 'export' (what tracer='auto' ended up using)."""
        return "export" if isinstance(self.exported, torch.export.ExportedProgram) else "record"


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module, index: ModelIndex | None = None) -> Iterator[None]:
    """Put every submodule in eval mode, then restore each one's own flag."""
    modules = [m for _, m in index.modules] if index is not None else list(model.modules())
    flags = [(m, m.training) for m in modules]
    if any(flag for _, flag in flags):
        model.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            if m.training is not flag:  # Module.__setattr__ is slow: write only what changed
                m.training = flag


def op_key(target: Any) -> str:
    """'aten::conv2d' for torch.ops.aten.conv2d.default; a readable name for anything else."""
    if isinstance(target, torch._ops.OpOverload):
        return _overload_key(target)
    schema = getattr(target, "_schema", None)
    if schema is not None:
        return str(schema.name)
    name = getattr(target, "__name__", None) or str(target)
    module = getattr(target, "__module__", None) or "python"
    return f"{module}::{name}"


@cached_by_identity
def _overload_key(target: torch._ops.OpOverload) -> str:
    return str(target._schema.name)


def _concrete(v: Any) -> Any:
    """Turn fx nodes holding symbolic ints (and containers of them) into plain Python values."""
    if isinstance(v, torch.fx.Node):
        val = v.meta.get("val")
        if isinstance(val, (torch.SymInt, torch.SymFloat, torch.SymBool)):
            return val.node.hint if hasattr(val.node, "hint") else int(val)
        return val
    if isinstance(v, (list, tuple)):
        return type(v)(_concrete(x) for x in v)
    if isinstance(v, torch.SymInt):
        try:
            return int(v)
        except Exception as exc:  # noqa: BLE001 - unbacked: read off tensor values
            raise TraceError(f"the size {v} depends on tensor values (nonzero, masked_select, ...); "
                             "prunec needs static sizes") from exc
    return v


def _shape(t: Any) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in t.shape)
    except Exception as exc:  # noqa: BLE001 - an unbacked size (torch.nonzero(...)) has no value
        raise TraceError(f"a tensor of size {tuple(t.shape)} has a size that depends on tensor values "
                         "(nonzero, masked_select, boolean-mask indexing); prunec needs static sizes. "
                         "Compute such masks outside the model, or pass them as inputs.") from exc


def _module_of(node: torch.fx.Node) -> tuple[str | None, str | None]:
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return None, None
    path, cls = list(stack.values())[-1]
    cls_name = cls if isinstance(cls, str) else f"{cls.__module__}.{cls.__qualname__}"
    return str(path).split("@")[0] or None, cls_name


def _is_tensor(v: Any) -> bool:
    return isinstance(v, torch.Tensor)


def _export(model: torch.nn.Module, inputs: ExampleInputs) -> torch.export.ExportedProgram:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.export.export(model, tuple(inputs.args), dict(inputs.kwargs), strict=False)


TRACERS = ("auto", "record", "export")


def check_tracer(tracer: str) -> None:
    """Raise InputError unless `tracer` names a tracer."""
    if tracer not in TRACERS:
        raise InputError(f"tracer={tracer!r}; use one of {', '.join(TRACERS)}")


def trace(model: torch.nn.Module, inputs: ExampleInputs, *, tracer: str = "auto") -> TracedTorch:
    """Trace `model` on `inputs` into the IR; raise TraceError/InputError with the cause.

    `tracer`: 'record' records one eager forward at the pre-dispatch level (fast, see
    torch_record.py); 'export' runs torch.export; 'auto' records and falls back to torch.export
    when the recording is not faithful.
    """
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"expected a torch.nn.Module, got {type(model).__name__}")
    if not inputs.tensors():
        raise InputError("example_inputs hold no tensor; pass at least one input tensor")
    check_tracer(tracer)
    index = ModelIndex.of(model)
    check_devices(model, inputs, index)
    # each attempt runs the forward, which may cache or count things: put them back after each, so
    # the fallback starts from the model as the user gave it
    if tracer != "export":
        with python_state_kept(index), eval_mode(model, index):
            try:
                return _trace_recorded(model, inputs, index)
            except Exception as exc:  # noqa: BLE001 - any failure of the fast path falls back to export
                if tracer == "record":
                    raise TraceError(f"recording {type(model).__name__} failed: {type(exc).__name__}: {exc}. "
                                     "Use tracer='export'.") from exc
    with python_state_kept(index), eval_mode(model, index), record_autograd_calls() as calls:
        try:
            ep = _export(model, inputs)
        except Exception as exc:  # noqa: BLE001 - any failure of export is reported with its cause
            _raise_trace_error(model, inputs, exc)
    _check_program_runs(model, ep, inputs)
    return _build(model, ep, inputs, calls)


def _trace_recorded(model: torch.nn.Module, inputs: ExampleInputs, index: ModelIndex) -> TracedTorch:
    from prunec.frontends.torch_record import NotRecordable, Ref, record, replays_exactly

    program, eager_out = record(model, inputs, index=index)
    rec = program.recording
    if rec.suspicious and not replays_exactly(program, inputs, eager_out):
        raise NotRecordable("the recorded program does not reproduce the eager outputs (it saw "
                            f"{', '.join(dict.fromkeys(rec.suspicious))})")
    graph = Graph()
    traced = TracedTorch(graph=graph, exported=program, inputs=inputs)  # type: ignore[arg-type]
    by_id: dict[int, list[str]] = {}
    for name, t in index.state:
        by_id.setdefault(id(t), []).append(name)
    # values in torch.export's order (parameters, buffers, constants, then inputs), so atoms, group
    # ids and member order do not depend on the tracer
    order: dict[int, int] = {}
    for _, t in [*index.parameters, *index.buffers]:
        order.setdefault(id(t), len(order))
    dtype_names: dict[Any, str] = {}

    def dtype_name(dtype: Any) -> str:
        text = dtype_names.get(dtype)
        if text is None:
            text = dtype_names[dtype] = str(dtype)
        return text

    for ref, (_, tensor) in sorted(rec.attrs.items(), key=lambda kv: order.get(id(kv[1][1]), len(order))):
        shape, dtype = rec.meta[ref]
        names = by_id.get(id(tensor))
        if names is None:  # a tensor the model holds outside its state_dict
            graph.add_value(Value(rec.names[ref], shape, dtype_name(dtype), ValueKind.CONSTANT))
        else:
            kind = ValueKind.PARAM if isinstance(tensor, torch.nn.Parameter) else ValueKind.BUFFER
            graph.add_value(Value(rec.names[ref], shape, dtype_name(dtype), kind, param=names[0],
                                  aliases=tuple(names[1:])))
    for name, ref, _ in rec.inputs:
        if ref is not None:
            shape, dtype = rec.meta[ref]
            graph.add_value(Value(name, shape, dtype_name(dtype), ValueKind.INPUT))
            graph.graph_inputs.append(name)

    names_of = rec.names

    def value_name(a: Any) -> str | None:
        return names_of[a.id] if type(a) is Ref else None

    for call in rec.calls:
        inputs_, attrs = split_args(call.target, call.args, call.kwargs, value_name, _same)
        outputs = [names_of[r] for r in call.outs if r is not None]
        if not outputs and not inputs_:
            continue  # pure Python arithmetic
        for r in call.outs:
            if r is not None:
                shape, dtype = rec.meta[r]
                graph.add_value(Value(names_of[r], shape, dtype_name(dtype)))
        origin, cls = call.modules[-1] if call.modules else (None, None)
        op = OpNode(call.name, op_key(call.target), attrs, origin, cls, call.target)
        graph.add_op(op, inputs_, outputs)
    graph.graph_outputs.extend(names_of[o.id] for o in rec.outputs if isinstance(o, Ref))
    graph.lint()
    return traced


def _same(v: Any) -> Any:
    return v


def _check_program_runs(model: torch.nn.Module, ep: torch.export.ExportedProgram,
                        inputs: ExampleInputs) -> None:
    """The traced program must run on the inputs it was traced with: every later step (reference,
    GraphModule output) executes it. It can fail where tracing predicted other memory layouts
    than eager execution produces (a .view() of a channels-last tensor)."""
    state = list(model.state_dict(keep_vars=True).values())
    if any(t.device.type == "meta" for t in [*inputs.tensors(), *state]):
        return
    program = ep.module()
    try:
        with torch.no_grad():
            inputs.cloned().call(program)  # the program may write into its inputs (x.relu_())
    except Exception as exc:  # noqa: BLE001 - reported with the node that failed
        node, where = _failing_node(program, exc)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise TraceError(
            f"torch.export traced {type(model).__name__}, but the traced program fails on the same inputs "
            f"{inputs.describe()}{f' at node {node!r}' if node else ''}{f' (from {where})' if where else ''}"
            f": {type(exc).__name__}: {first.rstrip('.')}. Tracing and eager execution disagree there, "
            "typically on the memory layout of a tensor (channels-last or transposed) before a .view(); "
            "use .reshape() there, or pass contiguous inputs.") from exc


def _failing_node(program: torch.fx.GraphModule, exc: BaseException) -> tuple[str | None, str | None]:
    """The fx node whose generated line raised, and the user code that produced it."""
    import traceback

    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith("<eval_with_key>")]
    if not frames or " = " not in (frames[-1].line or ""):
        return None, None
    name = (frames[-1].line or "").split(" = ")[0].strip()
    node = next((n for n in program.graph.nodes if n.name == name), None)
    trace = (node.meta.get("stack_trace") or "") if node is not None else ""
    lines = [ln.strip() for ln in trace.strip().splitlines()]
    where = None
    if len(lines) >= 2 and lines[-2].startswith("File "):
        where = f"{lines[-2][5:]}: {lines[-1]}"
    return name, where


def check_devices(model: torch.nn.Module, inputs: ExampleInputs, index: ModelIndex | None = None) -> None:
    """Inputs on another device than the model's state fail deep inside export: say so up front."""
    state = {t.device for _, t in (index or ModelIndex.of(model)).state}
    given = {t.device for t in inputs.tensors()}
    if len(state) == 1 and given and given != state:
        (want,) = state
        have = ", ".join(sorted(str(d) for d in given))
        raise InputError(f"the example inputs are on {have} but the model's parameters and buffers are on "
                         f"{want}; move them to one device (inputs.to('{want}') or model.to(...))")


# what blocked tracing, recognised from torch.export's error text
_CONSTRUCTS = (
    (("data-dependent", "DataDependent"), "data-dependent control flow or sizes (a Python if/while, int() or "
     ".item() on a tensor's values)"),
    ((".numpy()", "numpy"), "a conversion of a tensor to NumPy"),
    (("tolist", ".item()", "_local_scalar_dense"), "a tensor turned into Python numbers (.item()/.tolist())"),
)


def _user_frame(exc: BaseException) -> str | None:
    """'file:line in func: code' of the innermost frame outside torch, prunec and the stdlib."""
    import os
    import traceback

    skip = tuple(os.path.dirname(m.__file__ or "") + os.sep for m in (torch, contextlib))
    skip += (os.path.dirname(os.path.dirname(__file__)) + os.sep,)
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith(skip) and not f.filename.startswith("<")]
    if not frames:
        return None
    f = frames[-1]
    return f"{f.filename}:{f.lineno} in {f.name}: {(f.line or '').strip()}"


def _raise_trace_error(model: torch.nn.Module, inputs: ExampleInputs, exc: Exception) -> None:
    on_meta = any(t.device.type == "meta" for t in inputs.tensors())
    if not on_meta:
        try:
            with torch.no_grad():
                inputs.cloned().call(model)
        except Exception as run_exc:  # noqa: BLE001 - the model itself fails on these inputs
            raise InputError(
                f"the model fails on the example inputs {inputs.describe()}: "
                f"{type(run_exc).__name__}: {str(run_exc).splitlines()[0] if str(run_exc) else ''}. "
                "Pass inputs of the shape, dtype and device the model expects.") from run_exc
    text = f"{type(exc).__name__}: {exc}"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    construct = next((what for keys, what in _CONSTRUCTS if any(k in text for k in keys)),
                     "a Python construct torch.export cannot trace")
    where = _user_frame(exc)
    raise TraceError(
        f"torch.export could not trace {type(model).__name__} on inputs {inputs.describe()}: {construct}"
        f"{f', at {where}' if where else ''} ({type(exc).__name__}: {first}). Rewrite that construct with "
        "tensor ops (torch.where, torch.cond), move it into a torch.library custom op (prunec then "
        "keeps its channels unpruned), or prune a submodule that traces: "
        "prunec.prune(model.<child>, ...).") from exc


def _build(model: torch.nn.Module, ep: torch.export.ExportedProgram, inputs: ExampleInputs,
           calls: dict[int, AutogradCall] | None = None) -> TracedTorch:
    sig = ep.graph_signature
    # autograd.Function calls: one IR op each (see autograd_calls.py)
    calls_found = regions(ep.graph, calls or {})
    region_of = {n.name: cid for cid, r in calls_found.items() for n in r.nodes if n.op == "call_function"}
    graph = Graph()
    traced = TracedTorch(graph=graph, exported=ep, inputs=inputs)

    # tied weights: one tensor, several state_dict names -> one IR value
    by_id: dict[int, list[str]] = {}
    for name, t in model.state_dict(keep_vars=True).items():
        by_id.setdefault(id(t), []).append(name)
    named = dict(model.named_parameters(remove_duplicate=False))
    named.update(dict(model.named_buffers(remove_duplicate=False)))
    state_keys = set(model.state_dict(keep_vars=True).keys())
    value_of_tensor: dict[int, str] = {}

    kinds = {spec.arg.name: spec for spec in sig.input_specs if hasattr(spec.arg, "name")}
    for node in ep.graph.nodes:
        if node.op == "placeholder":
            _add_placeholder(node, kinds.get(node.name), graph, traced, named, state_keys, by_id,
                             value_of_tensor)
        elif node.op == "call_function" and node.name in region_of:
            region = calls_found.pop(region_of[node.name], None)
            if region is not None:  # the call's first node: add the whole call as one op
                add_region(region, graph, traced.fx_to_value, _module_of(node))
        elif node.op == "call_function":
            _add_call(node, graph, traced)
        elif node.op == "get_attr":
            val = node.meta.get("val")
            if _is_tensor(val):
                graph.add_value(Value(node.name, _shape(val), str(val.dtype), ValueKind.CONSTANT))
                traced.fx_to_value[node.name] = node.name
        elif node.op == "output":
            leaves, _ = torch.utils._pytree.tree_flatten(node.args[0])
            for leaf in leaves:
                if isinstance(leaf, torch.fx.Node) and leaf.name in traced.fx_to_value:
                    graph.graph_outputs.append(traced.fx_to_value[leaf.name])
    graph.lint()
    return traced


def _add_placeholder(node: torch.fx.Node, spec: Any, graph: Graph, traced: TracedTorch,
                     named: dict[str, torch.Tensor], state_keys: set[str],
                     by_id: dict[int, list[str]], value_of_tensor: dict[int, str]) -> None:
    val = node.meta.get("val")
    if not _is_tensor(val):
        return
    from torch.export.graph_signature import InputKind

    kind = spec.kind if spec is not None else InputKind.USER_INPUT
    target = getattr(spec, "target", None)
    if kind == InputKind.USER_INPUT:
        graph.add_value(Value(node.name, _shape(val), str(val.dtype), ValueKind.INPUT))
        graph.graph_inputs.append(node.name)
        traced.fx_to_value[node.name] = node.name
        return
    if not node.users:
        return  # unused state: nothing reads it, nothing to prune
    tensor = named.get(target) if target is not None else None
    if tensor is not None and id(tensor) in value_of_tensor:
        traced.fx_to_value[node.name] = value_of_tensor[id(tensor)]  # tied with an earlier one
        return
    if kind == InputKind.PARAMETER and target in state_keys:
        vkind = ValueKind.PARAM
    elif kind == InputKind.BUFFER and target in state_keys and getattr(spec, "persistent", True):
        vkind = ValueKind.BUFFER
    else:
        vkind = ValueKind.CONSTANT
    aliases: tuple[str, ...] = ()
    if tensor is not None and vkind != ValueKind.CONSTANT:
        names = by_id.get(id(tensor), [target])
        target = names[0]  # canonical: the first state_dict name of a tied tensor
        aliases = tuple(names[1:])
    graph.add_value(Value(node.name, _shape(val), str(val.dtype), vkind,
                          param=target if vkind != ValueKind.CONSTANT else None, aliases=aliases))
    traced.fx_to_value[node.name] = node.name
    if tensor is not None:
        value_of_tensor[id(tensor)] = node.name


def _add_call(node: torch.fx.Node, graph: Graph, traced: TracedTorch) -> None:
    if node.target is operator.getitem:
        return  # multi-output ops define their getitem values themselves
    val = node.meta.get("val")
    out_vals = list(val) if isinstance(val, (list, tuple)) else [val]
    if not any(_is_tensor(v) for v in out_vals) and not _reads_tensors(node, traced):
        return  # pure Python/SymInt arithmetic
    inputs, attrs = _normalize_args(node, traced)
    outputs: list[str] = []
    if isinstance(val, (list, tuple)):
        getitems = {u.args[1]: u for u in node.users if u.target is operator.getitem}
        for i, v in enumerate(out_vals):
            if not _is_tensor(v):
                continue
            name = getitems[i].name if i in getitems else f"{node.name}.out{i}"
            graph.add_value(Value(name, _shape(v), str(v.dtype)))
            traced.fx_to_value[name] = name
            outputs.append(name)
    elif _is_tensor(val):
        graph.add_value(Value(node.name, _shape(val), str(val.dtype)))
        traced.fx_to_value[node.name] = node.name
        outputs.append(node.name)
    origin, cls = _module_of(node)
    graph.add_op(OpNode(node.name, op_key(node.target), attrs, origin, cls, node.target), inputs, outputs)


def _reads_tensors(node: torch.fx.Node, traced: TracedTorch) -> bool:
    found = False

    def visit(a: torch.fx.Node) -> torch.fx.Node:
        nonlocal found
        if a.name in traced.fx_to_value:
            found = True
        return a
    torch.fx.node.map_arg((node.args, node.kwargs), visit)
    return found


def _normalize_args(node: torch.fx.Node, traced: TracedTorch) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """Split a call's arguments into tensor ports and plain attributes, by schema name."""
    def value_name(a: Any) -> str | None:
        return traced.fx_to_value.get(a.name) if isinstance(a, torch.fx.Node) else None
    return split_args(node.target, node.args, node.kwargs, value_name, _concrete)


def split_args(target: Any, args: Any, kwargs: Any, value_name: Any, concrete: Any
               ) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """(ports, attrs) of one call: arguments that name an IR value (`value_name(arg)` is not None)
    become ports named by the schema, lists of them ports 'name.j'; the rest are attributes."""
    schema = _schema_arguments(target)
    inputs: list[tuple[str, str]] = []
    attrs: dict[str, Any] = {}
    if schema is None:
        flat = list(args) + list(kwargs.values())
        for i, a in enumerate(flat):
            _classify(f"arg{i}", a, inputs, attrs, value_name, concrete)
        return inputs, attrs
    given = len(args)
    for i, (name, has_default, default) in enumerate(schema):
        if i < given:
            value = args[i]
        elif name in kwargs:
            value = kwargs[name]
        elif has_default:
            value = default
        else:
            continue
        vname = value_name(value)
        if vname is not None:  # the common case, a tensor argument, without a call
            inputs.append((name, vname))
        else:
            _classify(name, value, inputs, attrs, value_name, concrete)
    return inputs, attrs


@cached_by_identity
def _schema_arguments(target: Any) -> tuple[tuple[str, bool, Any], ...] | None:
    """(name, has default, default) of each schema argument of an op overload, cached (reading a
    schema builds new Python objects every time)."""
    schema = getattr(target, "_schema", None)
    return None if schema is None else tuple(
        (a.name, a.has_default_value(), a.default_value if a.has_default_value() else None)
        for a in schema.arguments)


def _classify(name: str, value: Any, inputs: list[tuple[str, str]], attrs: dict[str, Any], value_name: Any,
              concrete: Any) -> None:
    vname = value_name(value)
    if vname is not None:
        inputs.append((name, vname))
        return
    if isinstance(value, (list, tuple)) and any(value_name(v) is not None for v in value):
        ports: list[str | None] = []
        for j, v in enumerate(value):
            vn = value_name(v)
            if vn is not None:
                port = f"{name}.{j}"
                inputs.append((port, vn))
                ports.append(port)
            else:
                ports.append(None if v is None else concrete(v))
        attrs[name] = tuple(ports)
        return
    attrs[name] = concrete(value)
