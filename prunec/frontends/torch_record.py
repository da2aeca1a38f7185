"""Fast torch frontend: record the ATen ops of one eager forward at torch's pre-dispatch level.

torch.export runs the model on fake tensors through several tracing layers (a few milliseconds per
op). This frontend runs the model once, eagerly, under a dispatch mode on the PreDispatch key. That
key sees the ops torch.export keeps (aten::linear, aten::conv2d, aten::batch_norm: composite ops not
yet decomposed) with real tensors, at tens of microseconds per op. The calls are written as an fx
graph in the form of `ExportedProgram.module()`: user inputs are placeholders, parameters and
buffers get_attr nodes named by their state_dict key, one call_function node per op (named as
torch.export names them). The IR is built from that graph with the export frontend's builder.

It relies on private torch hooks (a SchemaCheckMode subclass, the only user-visible mode class the
PreDispatch mode stack accepts, and the Python dispatcher). Whenever they are missing, or the model
does something the recording does not describe (user autograd.Functions, `out=` calls), `record`
raises `NotRecordable`, and the caller falls back to torch.export. Every recording is replayed once
on the example inputs and must reproduce the eager outputs (random ops that matter fail this).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import operator
import warnings
from collections.abc import Iterator
from typing import Any

import torch
import torch.fx
from torch.utils import _pytree as pytree

from prunec.inputs import ExampleInputs

try:  # the one user-visible mode class the PreDispatch mode stack accepts (private torch API)
    from torch._subclasses.schema_check_mode import SchemaCheckMode as _PreDispatchMode
except ImportError:  # pragma: no cover - older or newer torch: the export frontend is used instead
    _PreDispatchMode = None  # type: ignore[assignment,misc]


class NotRecordable(Exception):
    """The model cannot be recorded faithfully; trace it with torch.export instead."""


class RecordedProgram:
    """A recorded forward: an fx graph over the model's own tensors (ExportedProgram.module()'s role)."""

    def __init__(self, graph: torch.fx.Graph, attrs: dict[str, torch.Tensor]) -> None:
        self.graph = graph
        self._attrs = attrs

    def module(self) -> torch.fx.GraphModule:
        """A fresh runnable GraphModule (its graph and attribute tree are its own; tensors are shared)."""
        root = torch.nn.Module()
        for name, t in self._attrs.items():
            owner = root
            *path, leaf = name.split(".")
            for part in path:
                if not hasattr(owner, part):
                    owner.add_module(part, torch.nn.Module())
                owner = getattr(owner, part)
            if isinstance(t, torch.nn.Parameter):
                owner.register_parameter(leaf, t)
            else:
                owner.register_buffer(leaf, t)
        return torch.fx.GraphModule(root, copy.deepcopy(self.graph))


def _meta(v: Any) -> Any:
    """Shape and dtype of a value without its data (what torch.export keeps as node.meta['val'])."""
    if isinstance(v, torch.Tensor):
        return torch.empty(v.shape, dtype=v.dtype, device="meta")
    if isinstance(v, (list, tuple)):
        return type(v)(_meta(x) for x in v)
    return v


class _Recorder(_PreDispatchMode or object):  # type: ignore[misc]
    """Dispatch mode on the PreDispatch key: run each op, then write it as an fx node."""

    def __init__(self, graph: torch.fx.Graph, node_of: Any, attr_node: Any, modules: list[tuple[str, str]]) -> None:
        super().__init__()
        self._dispatch_key = torch._C.DispatchKey.PreDispatch
        self.graph = graph
        self.node_of = node_of
        self.attr_node = attr_node
        self.modules = modules

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if "out" in kwargs:
            raise NotRecordable(f"{func} writes into an out= tensor")
        out = func(*args, **kwargs)
        if isinstance(out, (bool, int, float, complex)):
            # a tensor's value steered Python (if x.sum() > 0, x.item()): torch.export refuses such
            # models, and a recording would silently keep only the branch this input took
            raise NotRecordable(f"{func} turns tensor data into a Python value")

        def to_node(a: Any) -> Any:
            if isinstance(a, torch.Tensor):
                node = self.node_of.get(a)
                return node if node is not None else self.attr_node(a)
            return a
        fx_args, fx_kwargs = pytree.tree_map(to_node, (args, kwargs))
        name = self.graph._target_to_str(func.overloadpacket.__name__)
        node = self.graph.create_node("call_function", func, tuple(fx_args), dict(fx_kwargs), name=name)
        node.meta["val"] = _meta(out)
        stack = {path: (path, cls) for path, cls in self.modules}
        node.meta["nn_module_stack"] = stack
        if isinstance(out, torch.Tensor):
            self.node_of[out] = node
        elif isinstance(out, (list, tuple)):
            for i, o in enumerate(out):
                if isinstance(o, torch.Tensor):
                    item = self.graph.create_node("call_function", operator.getitem, (node, i),
                                                  name=self.graph._target_to_str("getitem"))
                    item.meta["val"], item.meta["nn_module_stack"] = _meta(o), stack
                    self.node_of[o] = item
        return out


@contextlib.contextmanager
def _module_stack(model: torch.nn.Module) -> Iterator[list[tuple[str, str]]]:
    """The (path, class) of every model submodule whose forward is running, outermost first."""
    paths = {id(m): name for name, m in model.named_modules() if name}
    stack: list[tuple[str, str]] = []
    pushed: list[bool] = []

    def pre(module: torch.nn.Module, args: Any) -> None:
        path = paths.get(id(module))
        pushed.append(path is not None)
        if path is not None:
            cls = type(module)
            stack.append((path, f"{cls.__module__}.{cls.__qualname__}"))

    def post(module: torch.nn.Module, args: Any, out: Any) -> None:
        if pushed and pushed.pop():
            stack.pop()

    h1 = torch.nn.modules.module.register_module_forward_pre_hook(pre)
    h2 = torch.nn.modules.module.register_module_forward_hook(post, always_call=True)
    try:
        yield stack
    finally:
        h1.remove()
        h2.remove()


@contextlib.contextmanager
def _refuse_user_autograd_functions() -> Iterator[None]:
    """User-defined autograd.Functions become one opaque IR op through the export frontend only."""
    function = torch.autograd.Function
    original = function.__dict__.get("apply")

    def apply(cls: type, *args: Any, **kwargs: Any) -> Any:
        if cls.__module__.split(".")[0] != "torch":
            raise NotRecordable(f"autograd.Function {cls.__qualname__}")
        return original.__get__(None, cls)(*args, **kwargs)  # type: ignore[union-attr]

    function.apply = classmethod(apply)  # type: ignore[assignment]  # restored below
    try:
        yield
    finally:
        function.apply = original  # type: ignore[assignment]


@contextlib.contextmanager
def _mha_fastpath_off() -> Iterator[None]:
    """nn.MultiheadAttention's fused inference kernel hides its projections; torch.export never
    takes it, so the recording must not either."""
    mha = getattr(torch.backends, "mha", None)
    if mha is None or not hasattr(mha, "set_fastpath_enabled"):
        yield
        return
    before = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(before)


def _input_names(model: torch.nn.Module, inputs: ExampleInputs) -> list[str]:
    """forward's parameter name for each positional argument, then the keyword names."""
    try:
        params = [p for p in inspect.signature(model.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    names = [params[i].name if i < len(params) else f"arg{i}" for i in range(len(inputs.args))]
    return names + list(inputs.kwargs)


def record(model: torch.nn.Module, inputs: ExampleInputs) -> tuple[RecordedProgram, Any]:
    """Run `model` once on `inputs`, recording its ATen ops; returns the program and the outputs.

    Raises NotRecordable when the recording could not reproduce the model (the caller then uses
    torch.export). The model must already be in the mode it should be traced in.
    """
    if _PreDispatchMode is None:
        raise NotRecordable("this torch has no pre-dispatch mode hook")
    from torch._dispatch.python import enable_python_dispatcher
    from torch.fx.graph import _PyTreeCodeGen, _PyTreeInfo
    from torch.utils.weak import WeakIdKeyDictionary

    graph = torch.fx.Graph()
    node_of: Any = WeakIdKeyDictionary()
    attrs: dict[str, torch.Tensor] = {}
    state = {id(t): n for n, t in model.named_parameters(remove_duplicate=True)}
    state.update({id(t): n for n, t in model.named_buffers(remove_duplicate=True)})

    names = _input_names(model, inputs)
    leaves, in_spec = pytree.tree_flatten((tuple(inputs.args), dict(inputs.kwargs)))
    top = list(inputs.args) + list(inputs.kwargs.values())
    for name, arg in zip(names, top):
        arg_leaves = pytree.tree_leaves(arg)
        for k, leaf in enumerate(arg_leaves):
            node = graph.placeholder(name if len(arg_leaves) == 1 else f"{name}_{k}")
            node.meta["val"] = _meta(leaf)
            if isinstance(leaf, torch.Tensor):
                node_of[leaf] = node
    if sum(len(pytree.tree_leaves(a)) for a in top) != len(leaves):
        raise NotRecordable("inputs hold containers whose leaves cannot be named")

    def attr_node(t: torch.Tensor) -> torch.fx.Node:
        target = state.get(id(t))
        if target is None:  # a tensor the model holds outside its state, or created off the record
            target = f"_prunec_constant{len(attrs)}"
            name = f"c_lifted_tensor_{len(attrs)}"
        else:  # torch.export's placeholder names: p_conv1_weight, b_bn1_running_mean
            prefix = "p_" if isinstance(t, torch.nn.Parameter) else "b_"
            name = prefix + target.replace(".", "_").lower()
        attrs[target] = t
        node = graph.create_node("get_attr", target, name=name)
        node.meta["val"] = _meta(t)
        node_of[t] = node
        return node

    with contextlib.ExitStack() as stack:
        stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")
        stack.enter_context(torch.no_grad())
        stack.enter_context(_mha_fastpath_off())
        stack.enter_context(_refuse_user_autograd_functions())
        modules = stack.enter_context(_module_stack(model))
        stack.enter_context(enable_python_dispatcher())
        stack.enter_context(_Recorder(graph, node_of, attr_node, modules))
        out = inputs.call(model)

    out_leaves, out_spec = pytree.tree_flatten(out)
    results = []
    for leaf in out_leaves:
        if isinstance(leaf, torch.Tensor):
            node = node_of.get(leaf)
            results.append(node if node is not None else attr_node(leaf))
        else:
            results.append(leaf)
    graph.output(results)
    graph._codegen = _PyTreeCodeGen(_PyTreeInfo(names, in_spec, out_spec))
    return RecordedProgram(graph, attrs), out


def replays_exactly(program: RecordedProgram, inputs: ExampleInputs, expected: Any) -> bool:
    """Whether the recorded program reproduces the eager outputs on the example inputs."""
    if any(t.device.type == "meta" for t in inputs.tensors()):
        return True  # nothing to compare on the meta device; the ops were recorded as dispatched
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = inputs.call(program.module())
    a, spec_a = pytree.tree_flatten(got)
    b, spec_b = pytree.tree_flatten(expected)
    if spec_a != spec_b:
        return False
    for x, y in zip(a, b):
        if isinstance(y, torch.Tensor):
            if not isinstance(x, torch.Tensor) or x.shape != y.shape or x.dtype != y.dtype:
                return False
            if not torch.allclose(x, y, rtol=1e-5, atol=1e-6, equal_nan=True):
                return False
        elif x != y:
            return False
    return True
