"""Fast torch frontend: record the ATen ops of one eager forward at torch's pre-dispatch level.

torch.export runs the model on fake tensors through several tracing layers (a few milliseconds per
op). This frontend runs the model once, eagerly, under a dispatch mode on the PreDispatch key. That
key sees the ops torch.export keeps (aten::linear, aten::conv2d, aten::batch_norm: composite ops not
yet decomposed) with real tensors, for tens of microseconds per op. Each call is kept as a small
record (the op, its arguments with tensors replaced by references, its node name); the IR is built
from the records, and the fx graph in the form of `ExportedProgram.module()` (user inputs as
placeholders, parameters and buffers as get_attr nodes named by their state_dict key, one
call_function node per op, named as torch.export names them) only when someone asks for it.

It relies on private torch hooks (a SchemaCheckMode subclass, the only user-visible mode class the
PreDispatch mode stack accepts, and the Python dispatcher). Whenever they are missing, or the model
does something a recording does not describe (tensor data steering Python, in-place writes into
parameters or inputs, Tensor.numpy()/tolist(), user autograd.Functions, autocast, `out=` calls),
`record` raises `NotRecordable` and the caller falls back to torch.export. Recordings that saw random ops or tensors
made outside any recorded op are replayed once and must reproduce the eager outputs.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import operator
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx
from torch.utils import _pytree as pytree

from prunec.frontends import leaf_memo
from prunec.frontends.identity_cache import cached_by_identity
from prunec.frontends.model_index import ModelIndex
from prunec.inputs import ExampleInputs

try:  # the one user-visible mode class the PreDispatch mode stack accepts (private torch API)
    from torch._subclasses.schema_check_mode import SchemaCheckMode as _PreDispatchMode
except ImportError:  # pragma: no cover - older or newer torch: the export frontend is used instead
    _PreDispatchMode = None  # type: ignore[assignment,misc]


class NotRecordable(Exception):
    """The model cannot be recorded faithfully; trace it with torch.export instead."""


class RefMap:
    """Tensor -> ref, by identity, without keeping the tensor alive (torch's WeakIdKeyDictionary,
    minus its per-lookup key objects). An entry whose tensor died is a miss, also when a new
    tensor took over its id."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[int, tuple[int, weakref.ref]] = {}

    def get(self, t: torch.Tensor, default: int | None = None) -> int | None:
        """The ref of `t`, or `default`."""
        e = self._entries.get(id(t))
        return e[0] if e is not None and e[1]() is t else default

    def __getitem__(self, t: torch.Tensor) -> int:
        e = self._entries.get(id(t))
        if e is None or e[1]() is not t:
            raise KeyError(t)
        return e[0]

    def __setitem__(self, t: torch.Tensor, ref: int) -> None:
        self._entries[id(t)] = (ref, weakref.ref(t))

    def __contains__(self, t: object) -> bool:
        e = self._entries.get(id(t))
        return e is not None and e[1]() is t


class Ref:
    """A tensor in a recorded call's arguments: the value it is (by number). A plain slotted class:
    a recording makes one per tensor argument."""

    __slots__ = ("id",)

    def __init__(self, id: int) -> None:  # noqa: A002 - the value's number
        self.id = id

    def __eq__(self, other: object) -> bool:
        return type(other) is Ref and other.id == self.id

    def __hash__(self) -> int:
        return hash((Ref, self.id))

    def __repr__(self) -> str:
        return f"Ref(id={self.id})"


@dataclass(slots=True)
class Call:
    """One recorded op: target, arguments (tensors as Refs), node name, output refs by position."""

    target: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    name: str
    outs: tuple[int | None, ...]
    """Ref of each tensor output (one entry for a single tensor, one per element of a sequence)."""
    sequence: bool
    """Whether the op returned a list/tuple (its elements get getitem nodes)."""
    modules: tuple[tuple[str, str], ...]
    """(path, class) of every model submodule running, outermost first."""
    other: Any = None
    """The non-tensor result, when the op returned one."""


@dataclass
class Recording:
    """Everything one recorded forward produced."""

    calls: list[Call] = field(default_factory=list)
    names: dict[int, str] = field(default_factory=dict)
    """Ref -> the name of the value (placeholder, get_attr or op node name)."""
    meta: dict[int, tuple[tuple[int, ...], torch.dtype]] = field(default_factory=dict)
    inputs: list[tuple[str, int | None, Any]] = field(default_factory=list)
    """Placeholders: (name, ref or None for a non-tensor leaf, example value)."""
    attrs: dict[int, tuple[str, torch.Tensor]] = field(default_factory=dict)
    """Ref -> (attribute target, tensor) for parameters, buffers and constants, in first-use order."""
    outputs: list[Any] = field(default_factory=list)
    """Output leaves: Ref or a plain value."""
    arg_names: list[str] = field(default_factory=list)
    in_spec: Any = None
    out_spec: Any = None
    suspicious: list[str] = field(default_factory=list)
    """What only a replay can vouch for (random ops, tensors made outside the record)."""


class RecordedProgram:
    """A recorded forward: plays ExportedProgram's role (`module()`, `graph`) for the rest of prunec."""

    def __init__(self, recording: Recording) -> None:
        self.recording = recording
        self._attrs = {target: t for target, t in recording.attrs.values()}
        self._graph: torch.fx.Graph | None = None

    @property
    def graph(self) -> torch.fx.Graph:
        """The fx graph of the recording (built on first use)."""
        if self._graph is None:
            self._graph = _fx_graph(self.recording)
        return self._graph

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
        graph = torch.fx.Graph()
        out = graph.graph_copy(self.graph, {}, return_output_node=True)
        graph.output(out[0] if isinstance(out, tuple) else out)  # type: ignore[index]
        graph._codegen = self.graph._codegen
        return torch.fx.GraphModule(root, graph)


def _fx_graph(rec: Recording) -> torch.fx.Graph:
    """The recording as an fx graph whose node names are the IR's names."""
    from torch.fx.graph import _PyTreeCodeGen, _PyTreeInfo

    graph = torch.fx.Graph()
    node: dict[int, torch.fx.Node] = {}

    def meta_of(ref: int) -> torch.Tensor:
        shape, dtype = rec.meta[ref]
        return torch.empty(shape, dtype=dtype, device="meta")

    def arg(a: Any) -> Any:
        return map_args(a, Ref, lambda r: node[r.id])

    for name, ref, example in rec.inputs:
        n = graph.placeholder(name)
        n.meta["val"] = meta_of(ref) if ref is not None else example
        if ref is not None:
            node[ref] = n
    for ref, (target, _) in rec.attrs.items():
        n = graph.create_node("get_attr", target, name=rec.names[ref])
        n.meta["val"] = meta_of(ref)
        node[ref] = n
    for call in rec.calls:
        n = graph.create_node("call_function", call.target, tuple(arg(a) for a in call.args),
                              {k: arg(v) for k, v in call.kwargs.items()}, name=call.name)
        stack = {path: (path, cls) for path, cls in call.modules}
        n.meta["nn_module_stack"] = stack
        if not call.sequence:
            n.meta["val"] = meta_of(call.outs[0]) if call.outs and call.outs[0] is not None else call.other
            if call.outs and call.outs[0] is not None:
                node[call.outs[0]] = n
            continue
        n.meta["val"] = tuple(meta_of(r) if r is not None else None for r in call.outs)
        for i, r in enumerate(call.outs):
            if r is None:
                continue
            item = graph.create_node("call_function", operator.getitem, (n, i), name=rec.names[r])
            item.meta["val"], item.meta["nn_module_stack"] = meta_of(r), stack
            node[r] = item
    graph.output([arg(o) for o in rec.outputs])
    graph._codegen = _PyTreeCodeGen(_PyTreeInfo(rec.arg_names, rec.in_spec, rec.out_spec))
    return graph


class _ModuleStack:
    """The (path, class) of every model submodule whose call is running, outermost first, kept as
    one tuple that every op recorded meanwhile shares."""

    __slots__ = ("_saved", "now")

    def __init__(self) -> None:
        self.now: tuple[tuple[str, str], ...] = ()
        self._saved: list[tuple[tuple[str, str], ...]] = []

    def push(self, entry: tuple[str, str]) -> None:
        """A submodule's call starts."""
        self._saved.append(self.now)
        self.now = (*self.now, entry)

    def pop(self) -> None:
        """The innermost running call ends."""
        self.now = self._saved.pop()


class _NeedsValues(Exception):
    """A skipped (never computed) value reached an op whose result depends on values."""


class _Recorder(_PreDispatchMode or object):  # type: ignore[misc]
    """Dispatch mode on the PreDispatch key: run each op, then keep it as a Call.

    With `memo=True`, calls of torch.nn leaf modules are recorded from templates (see leaf_memo.py)
    without computing their outputs. Values derived from such skipped outputs are 'tainted'; an op
    whose result could depend on them (a data-dependent size, an integer or boolean result: indices,
    masks) raises _NeedsValues, and the caller records again with full arithmetic.
    """

    def __init__(self, rec: Recording, ref_of: Any, attr_ref: Any, modules: _ModuleStack,
                 memo: bool = False) -> None:
        super().__init__()
        self._dispatch_key = torch._C.DispatchKey.PreDispatch
        self.rec = rec
        self.ref_of = ref_of
        self.attr_ref = attr_ref
        self.modules = modules
        self.namespace = torch.fx.graph._Namespace()
        for name, _, _ in rec.inputs:
            self.namespace.create_name(name, None)
        self.memo = memo
        self.templates: dict[Any, leaf_memo.Template | None] = {}
        self.tainted: set[int] = set()
        self.skipped = False
        self.input_refs = {r for _, r, _ in rec.inputs if r is not None}
        self._meta_state: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        """id of a meta twin -> (the twin, the real state tensor), during a meta run."""

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        facts = op_facts(func)
        if "out" in kwargs:
            raise NotRecordable(f"{func} writes into an out= tensor")
        if facts.mutable:
            self._refuse_state_writes(func, facts, args, kwargs)
        if _autocast_on():
            raise NotRecordable("autocast changes dtypes below the recorded level")
        call_args = tuple([self._ref(a) for a in args])
        call_kwargs = {k: self._ref(v) for k, v in kwargs.items()} if kwargs else kwargs
        if facts.dynamic and _size_from_values(func, args, kwargs):
            # the output size is read off tensor values, and Python may turn it into a constant the
            # recording cannot see (n = torch.nonzero(m).shape[0]); torch.export tracks such sizes
            raise NotRecordable(f"{func} makes a tensor whose size depends on tensor values")
        hot = bool(self.tainted) and any(r in self.tainted for r in _refs((call_args, call_kwargs)))
        if type(func) is torch._ops.OpOverload:
            with _eager():  # the op itself runs as in plain eager mode, without Python kernels
                out = func(*args, **kwargs)
        else:
            out = func(*args, **kwargs)
        if isinstance(out, (bool, int, float, complex)):
            # a tensor's value steered Python (if x.sum() > 0, x.item()): torch.export refuses such
            # models, and a recording would silently keep only the branch this input took
            raise NotRecordable(f"{func} turns tensor data into a Python value")
        if facts.random and not _inert(facts, args, kwargs):
            self.rec.suspicious.append(str(func))
        name = self.namespace.create_name(facts.base_name, None)
        modules = self.modules.now
        if isinstance(out, torch.Tensor):
            call = Call(func, call_args, call_kwargs, name, (self._new_ref(out, name),), False, modules)
        elif isinstance(out, (list, tuple)):
            outs = [self._new_ref(o, self.namespace.create_name("getitem", None))
                    if isinstance(o, torch.Tensor) else None for o in out]
            call = Call(func, call_args, call_kwargs, name, tuple(outs), True, modules)
        else:
            call = Call(func, call_args, call_kwargs, name, (), False, modules, other=out)
        if hot:
            for r in call.outs:
                if r is not None:
                    dtype = self.rec.meta[r][1]
                    if not (dtype.is_floating_point or dtype.is_complex):
                        raise _NeedsValues(f"{func} makes {dtype} values from skipped ones")
                    self.tainted.add(r)
        self.rec.calls.append(call)
        return out

    def memo_call(self, module: torch.nn.Module, original: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Call a torch.nn leaf module's forward: from its template when one is known."""
        one = not kwargs and len(args) == 1 and type(args[0]) is torch.Tensor  # the common call
        leaves = [args[0]] if one else pytree.tree_leaves((args, kwargs))
        try:
            key = leaf_memo.key(module, leaves)
        except leaf_memo.Unkeyable:
            return original(*args, **kwargs)
        template = self.templates.get(key, _UNSEEN)
        if template is None:
            return original(*args, **kwargs)
        if one:
            in_refs = [self.ref_of.get(args[0])]
            off_record = in_refs[0] is None
        else:
            in_refs = [self.ref_of.get(x) if isinstance(x, torch.Tensor) else None for x in leaves]
            off_record = any(r is None and isinstance(x, torch.Tensor) for r, x in zip(in_refs, leaves))
        if off_record:
            return original(*args, **kwargs)  # an argument made off the record: the op path lifts it
        if template is _UNSEEN:
            return self._capture(key, module, original, args, kwargs, leaves, in_refs)
        if template.single:  # type: ignore[union-attr]
            return self._instantiate_single(template, module, in_refs)  # type: ignore[arg-type]
        return self._instantiate(template, module, leaves, in_refs)  # type: ignore[arg-type]

    def _capture(self, key: Any, module: torch.nn.Module, original: Any, args: tuple[Any, ...],
                 kwargs: dict[str, Any], leaves: list[Any], in_refs: list[int | None]) -> Any:
        first, suspicious = len(self.rec.calls), len(self.rec.suspicious)
        device = None
        if leaf_memo.worth_meta(module, leaves):
            device = leaves[0].device
            out, seen = self._run_on_meta(module, original, leaves[0])
        else:
            out, seen = original(*args, **kwargs), leaves
        after = [self.ref_of.get(x) if isinstance(x, torch.Tensor) else None for x in seen]
        attr_refs: dict[int, str] = {}
        for store in (module._parameters, module._buffers):
            for name, t in store.items():
                ref = None if t is None else self.ref_of.get(t)
                if ref is not None:
                    attr_refs.setdefault(ref, name)
        try:
            if len(self.rec.suspicious) != suspicious:
                raise leaf_memo.Unkeyable("random ops or constants")
            self.templates[key] = leaf_memo.build_template(
                self.rec.calls[first:], self.rec.meta, in_refs, attr_refs, after, seen, out, self.ref_of,
                _base_name, device)
        except leaf_memo.Unkeyable:
            self.templates[key] = None
        if device is None:
            return out
        # the meta run's values were never computed: hand on real-device tensors of the same layout
        for call in self.rec.calls[first:]:
            self.tainted.update(r for r in call.outs if r is not None)
        self.skipped = True
        real = _allocate(out.shape, out.stride(), out.dtype, device)
        self.ref_of[real] = self.ref_of[out]
        return real

    def _run_on_meta(self, module: torch.nn.Module, original: Any, x: torch.Tensor) -> tuple[Any, list[Any]]:
        """Run a Linear/Conv forward on meta twins of its input and state; the recorder sees the
        twins as the real tensors (same refs, state registered under its own names on first use)."""
        twin = _allocate(x.shape, x.stride(), x.dtype, "meta")
        self.ref_of[twin] = self.ref_of[x]
        swapped: list[tuple[dict[str, Any], str, torch.Tensor]] = []
        try:
            for store in (module._parameters, module._buffers):
                for name, t in list(store.items()):
                    if t is None:
                        continue
                    t_twin = _allocate(t.shape, t.stride(), t.dtype, "meta")
                    if isinstance(t, torch.nn.Parameter):
                        t_twin = torch.nn.Parameter(t_twin, requires_grad=t.requires_grad)
                    self._meta_state[id(t_twin)] = (t_twin, t)
                    swapped.append((store, name, t))
                    store[name] = t_twin
            out = original(twin)
        finally:
            for store, name, t in swapped:
                self._meta_state.pop(id(store[name]), None)
                store[name] = t
        if type(out) is not torch.Tensor or out.device.type != "meta":
            raise _NeedsValues("a meta run returned something else than one meta tensor")
        return out, [twin]

    def _instantiate(self, template: leaf_memo.Template, module: torch.nn.Module, leaves: list[Any],
                     in_refs: list[int | None]) -> Any:
        """Write down the template's calls for this module and arguments; outputs are allocated, not
        computed. (memo_call sends single templates to _instantiate_single.)"""
        rec = self.rec
        new: list[int] = []
        resolve, slot_type = self._resolve, leaf_memo.Slot

        def to_ref(slot: leaf_memo.Slot) -> Ref:
            return Ref(resolve(slot, module, in_refs, new))

        modules = self.modules.now
        for c in template.calls:
            for j in c.written_inputs:
                if self._protected(in_refs[j]):
                    raise NotRecordable(f"{c.target} writes into a model input or state tensor")
            if c.flat:
                args = tuple([Ref(resolve(a, module, in_refs, new)) if type(a) is slot_type else a
                              for a in c.args])
                kwargs: dict[str, Any] = {}
            else:
                args = map_args(c.args, slot_type, to_ref)
                kwargs = {k: map_args(v, slot_type, to_ref) for k, v in c.kwargs.items()} if c.kwargs else {}
            name = self.namespace.create_name(c.base_name, None)
            outs: list[int | None] = []
            for k in c.outs:
                if k is None:
                    outs.append(None)
                    continue
                ref = len(rec.meta)
                rec.meta[ref] = template.new_meta[k]
                rec.names[ref] = self.namespace.create_name("getitem", None) if c.sequence else name
                self.tainted.add(ref)
                new.append(ref)
                outs.append(ref)
            rec.calls.append(Call(c.target, args, kwargs, name, tuple(outs), c.sequence, modules, other=c.other))
        out: list[Any] = []
        for leaf in template.out_leaves:
            if leaf.slot is None:
                out.append(leaf.value)
                continue
            if leaf.same_as_input is not None:
                t = leaves[leaf.same_as_input]
            elif leaf.slot.kind == "attr":
                t = _state_tensor(module, leaf.slot.index)  # type: ignore[arg-type]
            else:
                t = _allocate(leaf.size, leaf.stride, leaf.dtype, leaf.device)
            self.ref_of[t] = self._resolve(leaf.slot, module, in_refs, new)
            out.append(t)
        for j, slot in template.rebinds:
            self.ref_of[leaves[j]] = self._resolve(slot, module, in_refs, new)
        self.skipped = True
        return out[0] if template.out_spec.is_leaf() else pytree.tree_unflatten(out, template.out_spec)

    def _instantiate_single(self, template: leaf_memo.Template, module: torch.nn.Module,
                            in_refs: list[int | None]) -> torch.Tensor:
        """_instantiate for a template of one op making the one output (no 'new' argument slots)."""
        rec, c, leaf = self.rec, template.calls[0], template.out_leaves[0]
        args = []
        for kind, x in template.plan:
            if kind == leaf_memo.PLAIN:
                args.append(x)
            elif kind == leaf_memo.IN:
                args.append(Ref(in_refs[x]))
            else:
                args.append(Ref(self._state_ref(_state_tensor(module, x))))
        name = self.namespace.create_name(c.base_name, None)
        ref = len(rec.meta)
        rec.meta[ref] = template.new_meta[0]
        rec.names[ref] = name
        self.tainted.add(ref)
        rec.calls.append(Call(c.target, tuple(args), {}, name, (ref,), False, self.modules.now, c.other))
        t = _allocate(leaf.size, leaf.stride, leaf.dtype, leaf.device)
        self.ref_of[t] = ref
        self.skipped = True
        return t

    def _resolve(self, slot: leaf_memo.Slot, module: torch.nn.Module, in_refs: list[int | None],
                 new: list[int]) -> int:
        """The ref a template slot stands for in this call."""
        if slot.kind == "new":
            return new[slot.index]  # type: ignore[index]
        if slot.kind == "in":
            return in_refs[slot.index]  # type: ignore[index,return-value]
        return self._state_ref(_state_tensor(module, slot.index))  # type: ignore[arg-type]

    def _protected(self, ref: int | None) -> bool:
        """Whether the value is a parameter, buffer or model input (never to be written into)."""
        return ref in self.rec.attrs or ref in self.input_refs

    def _state_ref(self, t: torch.Tensor) -> int:
        """The ref of a model state tensor, registering it on first use."""
        ref = self.ref_of.get(t)
        return ref if ref is not None else self.attr_ref(t)

    def _new_ref(self, t: torch.Tensor, name: str) -> int:
        ref = len(self.rec.meta)
        self.rec.meta[ref] = (tuple(t.shape), t.dtype)
        self.rec.names[ref] = name
        self.ref_of[t] = ref
        return ref

    def _ref(self, a: Any) -> Any:
        """An op argument with every tensor replaced by its Ref (ATen arguments nest at most as
        lists of tensors).
        """
        return map_args(a, torch.Tensor, self._tensor_ref)

    def _tensor_ref(self, t: torch.Tensor) -> Ref:
        ref = self.ref_of.get(t)
        if ref is None:
            twin = self._meta_state.get(id(t))
            if twin is not None and twin[0] is t:  # a meta twin of a module's state tensor
                ref = self.ref_of[t] = self._state_ref(twin[1])
            else:
                ref = self.attr_ref(t)
        return Ref(ref)

    def _refuse_state_writes(self, func: Any, facts: _OpFacts, args: tuple[Any, ...],
                             kwargs: dict[str, Any]) -> None:
        """An in-place write into a parameter, buffer or model input would change the user's
        tensors (torch.export traces on fakes and never does): refuse before the op runs.
        """
        given = dict(zip(facts.arg_names, args)) | kwargs
        for name in facts.written:
            t = given.get(name)
            if not isinstance(t, torch.Tensor):
                continue
            ref = self.ref_of.get(t)
            if ref is None or self._protected(ref):
                raise NotRecordable(f"{func} writes into a model input or state tensor")


_UNSEEN = object()

_eager = getattr(torch._C, "_DisablePythonDispatcher", contextlib.nullcontext)
"""Guard switching the Python dispatcher off: the recording needs it to see ops at the PreDispatch
key, but each op, once recorded, computes exactly as in eager mode (several times faster)."""


@functools.lru_cache(maxsize=1)
def _fx_names() -> Callable[[Any], str]:
    """fx's op-name function, from one Graph made once: making a Graph per recording left a cycle
    of garbage behind each time."""
    return torch.fx.Graph()._target_to_str


def _base_name(func: Any) -> str:
    """The base name torch.export gives nodes calling `func` ('conv2d', 'add_')."""
    return _fx_names()(func.overloadpacket.__name__)


def map_args(a: Any, kind: type, fn: Callable[[Any], Any]) -> Any:
    """An op argument (a value, or lists/tuples of them, as ATen arguments nest) with every `kind`
    in it replaced by fn(it)."""
    if isinstance(a, kind):
        return fn(a)
    if isinstance(a, (list, tuple)):
        return type(a)(map_args(x, kind, fn) for x in a)
    return a


def _allocate(size: Any, stride: Any, dtype: torch.dtype, device: Any) -> torch.Tensor:
    """An uninitialized tensor, made off the record (the recorder sits on the PreDispatch key)."""
    with torch._C._ExcludeDispatchKeyGuard(_PRE_DISPATCH), _eager():
        return torch.empty_strided(size, stride, dtype=dtype, device=device)


@dataclass(frozen=True)
class _OpFacts:
    """What the recorder checks of every call of one op (read from its schema once)."""

    mutable: bool
    dynamic: bool
    random: bool
    base_name: str
    arg_names: tuple[str, ...]
    """Schema argument names, in order."""
    written: tuple[str, ...]
    """The arguments the op writes into (in-place and out= ops)."""
    reads_values: bool
    """Tagged as reading its result's size or value off tensor values (leaf_memo.VALUE_TAGS)."""


@cached_by_identity
def op_facts(func: Any) -> _OpFacts:
    """What the recorder (and leaf templates) need of an ATen op overload, read once per op."""
    tags, schema = set(func.tags), func._schema
    return _OpFacts(
        bool(schema.is_mutable), _DYNAMIC is not None and _DYNAMIC in tags,
        torch.Tag.nondeterministic_seeded in tags, _base_name(func),
        tuple(a.name for a in schema.arguments),
        tuple(a.name for a in schema.arguments if a.alias_info is not None and a.alias_info.is_write),
        bool(leaf_memo.VALUE_TAGS & tags))


def _state_tensor(module: torch.nn.Module, name: str) -> torch.Tensor:
    return module._parameters[name] if name in module._parameters else module._buffers[name]  # type: ignore[return-value]


_DYNAMIC = getattr(torch.Tag, "dynamic_output_shape", None)


def _size_from_values(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether the op's output size depends on tensor values (nonzero, masked_select, unique, boolean
    mask indexing; indexing with integer tensors is value-independent in size). Asked of ops
    tagged dynamic_output_shape only."""
    if func.overloadpacket is torch.ops.aten.index:
        indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
        return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices)
    return True


_PRE_DISPATCH = torch._C.DispatchKeySet(torch._C.DispatchKey.PreDispatch)
"""The recorder's dispatch key: excluding it runs ops off the record."""


def _inert(facts: _OpFacts, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """A random op switched off by its arguments is deterministic: dropout with train=False
    (eval mode), rrelu with training=False, attention with dropout_p=0."""
    names = facts.arg_names
    given = dict(zip(names, args)) | kwargs
    if "train" in names or "training" in names:
        return given.get("train", given.get("training")) is False
    if "dropout_p" in names:
        return given.get("dropout_p", 0.0) == 0.0
    return False


def _autocast_on() -> bool:
    try:
        return torch.is_autocast_enabled("cpu") or torch.is_autocast_enabled("cuda")
    except TypeError:  # torch < 2.4 takes no device type
        return torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled()


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _has_forward_hooks(index: ModelIndex) -> bool:
    """Whether torch or a model module has forward (pre-)hooks: their ops run inside the module's
    call but outside its forward."""
    from torch.nn.modules import module as torch_module

    if torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks or isinstance(m, torch.jit.ScriptModule)
               for _, m in index.modules)


@contextlib.contextmanager
def _instrumented(index: ModelIndex, stack: _ModuleStack,
                  recorder: _Recorder | None) -> Iterator[None]:
    """Keep `stack` as the (path, class) of every model submodule whose call is running, outermost
    first, and with a recorder, route the forward of every torch.nn leaf module through its memo.

    Each named submodule's forward is shadowed by an instance attribute (restored on exit). When
    hooks run ops around some forward, global module hooks keep the stack instead (slower: every
    module call then takes torch's hook path). Calls from other threads run the module's own
    forward and do not touch the stack.
    """
    thread = threading.get_ident()
    by_hooks = _has_forward_hooks(index)
    shadowed: list[tuple[dict[str, Any], Any]] = []  # (module __dict__, what its 'forward' was)
    handles = []
    try:
        if by_hooks:
            handles = _stack_hooks(index, stack, thread)
        class_names: dict[type, str] = {}
        for path, module in index.modules:
            memo = recorder is not None and leaf_memo.memoizable(module)
            if not path or (by_hooks and not memo):
                continue
            cls = type(module)
            entry = None
            if not by_hooks:
                name = class_names.get(cls)
                if name is None:
                    name = class_names[cls] = _class_name(cls)
                entry = (path, name)
            d = module.__dict__
            shadowed.append((d, d.get("forward", _NOT_SET)))
            d["forward"] = _shadow(module, module.forward, entry, stack, recorder if memo else None, thread)
        yield
    finally:
        for d, before in shadowed:
            if before is _NOT_SET:
                d.pop("forward", None)
            else:
                d["forward"] = before
        for h in handles:
            h.remove()


_NOT_SET = object()


def _shadow(module: torch.nn.Module, original: Any, entry: tuple[str, str] | None,
            stack: _ModuleStack, recorder: _Recorder | None, thread: int) -> Callable[..., Any]:
    """The forward shadowing `module.forward` during a recording."""
    if entry is None:  # the stack is kept by hooks: only the memo
        def memo_forward(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() != thread:
                return original(*args, **kwargs)
            return recorder.memo_call(module, original, args, kwargs)  # type: ignore[union-attr]
        return memo_forward

    def forward(*args: Any, **kwargs: Any) -> Any:
        if threading.get_ident() != thread:  # another thread running the model meanwhile
            return original(*args, **kwargs)
        stack.push(entry)
        try:
            if recorder is not None:
                return recorder.memo_call(module, original, args, kwargs)
            return original(*args, **kwargs)
        finally:
            stack.pop()
    return forward


def _stack_hooks(index: ModelIndex, stack: _ModuleStack, thread: int) -> list[Any]:
    """Global module hooks keeping the module stack (pushed before any pre-hook of the module runs,
    popped after its forward hooks)."""
    paths = {id(m): name for name, m in index.modules if name}
    pushed: list[bool] = []

    def pre(module: torch.nn.Module, args: Any) -> None:
        if threading.get_ident() != thread:  # the hooks are global: other threads' modules too
            return
        path = paths.get(id(module))
        pushed.append(path is not None)
        if path is not None:
            stack.push((path, _class_name(type(module))))

    def post(module: torch.nn.Module, args: Any, out: Any) -> None:
        if threading.get_ident() != thread:
            return
        if pushed and pushed.pop():
            stack.pop()

    return [torch.nn.modules.module.register_module_forward_pre_hook(pre),
            torch.nn.modules.module.register_module_forward_hook(post, always_call=True)]


@contextlib.contextmanager
def _refuse_user_autograd_functions() -> Iterator[None]:
    """User-defined autograd.Functions become one opaque IR op through the export frontend only."""
    function = torch.autograd.Function
    original = function.__dict__.get("apply")
    thread = threading.get_ident()

    def apply(cls: type, *args: Any, **kwargs: Any) -> Any:
        if cls.__module__.split(".")[0] != "torch" and threading.get_ident() == thread:
            raise NotRecordable(f"autograd.Function {cls.__qualname__}")
        return original.__get__(None, cls)(*args, **kwargs)  # type: ignore[union-attr]

    function.apply = classmethod(apply)  # type: ignore[assignment]  # restored below
    try:
        yield
    finally:
        function.apply = original  # type: ignore[assignment]


@contextlib.contextmanager
def _refuse_data_escapes() -> Iterator[None]:
    """Tensor.numpy() and Tensor.tolist() read tensor data without dispatching an op: Python could
    branch on it unseen, so a recording that uses them is refused (torch.export refuses them too).
    """
    patched = {}
    thread = threading.get_ident()

    def refuse(name: str) -> Any:
        own = getattr(torch.Tensor, name)

        def method(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() != thread:  # another thread: the real method
                return own(self, *args, **kwargs)
            raise NotRecordable(f"Tensor.{name}() hands tensor data to Python")
        return method

    for name in ("numpy", "tolist"):
        patched[name] = torch.Tensor.__dict__.get(name)
        setattr(torch.Tensor, name, refuse(name))
    try:
        yield
    finally:
        for name, original in patched.items():
            if original is None:
                delattr(torch.Tensor, name)
            else:
                setattr(torch.Tensor, name, original)


@contextlib.contextmanager
def _mha_fastpath_off() -> Iterator[None]:
    """nn.MultiheadAttention's fused inference kernel hides its projections; torch.export never
    takes it, so the recording must not either.
    """
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
    """Forward's parameter name for each positional argument, then the keyword names."""
    forward = model.forward
    function = getattr(forward, "__func__", None)  # a method: its signature is the function's
    try:
        params = _POSITIONAL.get(function) if function is not None else None
    except TypeError:
        params = None
    if params is None:
        try:
            params = [p.name for p in inspect.signature(forward).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        except (TypeError, ValueError):
            params = []
        if function is not None:
            with contextlib.suppress(TypeError):  # a callable object that takes no weak reference
                _POSITIONAL[function] = params
    names = [params[i] if i < len(params) else f"arg{i}" for i in range(len(inputs.args))]
    return names + list(inputs.kwargs)


_POSITIONAL: weakref.WeakKeyDictionary[Any, list[str]] = weakref.WeakKeyDictionary()
"""Forward function -> the names of its positional parameters (self excluded)."""


def flatten(tree: Any) -> tuple[list[Any], Any]:
    """pytree.tree_flatten, without the walk for the common cases: one tensor, and positional
    tensors with no keywords ((tensors, {}), as inputs are flattened)."""
    if type(tree) is torch.Tensor:
        return [tree], _spec_of("tensor", tree)
    if (type(tree) is tuple and len(tree) == 2 and type(tree[1]) is dict and not tree[1]
            and type(tree[0]) is tuple and all(type(a) is torch.Tensor for a in tree[0])):
        return list(tree[0]), _spec_of(len(tree[0]), tree)
    return pytree.tree_flatten(tree)


_SPECS: dict[Any, Any] = {}


def _spec_of(kind: Any, tree: Any) -> Any:
    """The (immutable) tree spec of a tree of that kind, made once."""
    spec = _SPECS.get(kind)
    if spec is None:
        spec = _SPECS[kind] = pytree.tree_flatten(tree)[1]
    return spec


def record(model: torch.nn.Module, inputs: ExampleInputs, *, memo: bool = True,
           index: ModelIndex | None = None) -> tuple[RecordedProgram, Any]:
    """Run `model` once on `inputs`, recording its ATen ops; returns the program and the outputs
    (None when the recording skipped some arithmetic, so the outputs hold no real values).

    `memo`: record repeated torch.nn leaf module calls from templates without computing them (see
    leaf_memo.py). When a skipped value turns out to matter, or the recording must be replayed (it
    saw random ops or off-record tensors), or anything fails, the model is recorded again with full
    arithmetic.

    Raises NotRecordable when the recording could not describe the model (the caller then uses
    torch.export). The model must already be in the mode it should be traced in.
    """
    if _PreDispatchMode is None:
        raise NotRecordable("this torch has no pre-dispatch mode hook")
    index = index or ModelIndex.of(model)
    if memo:
        try:
            program, out, skipped = _record(model, inputs, index, memo=True)
            if not skipped:
                return program, out
            if not program.recording.suspicious:
                return program, None
        except NotRecordable:
            raise
        except Exception:  # noqa: BLE001 - skipped values may have caused it; the full run decides
            pass
    program, out, _ = _record(model, inputs, index, memo=False)
    return program, out


def _record(model: torch.nn.Module, inputs: ExampleInputs, index: ModelIndex | None = None, *,
            memo: bool) -> tuple[RecordedProgram, Any, bool]:
    from torch._dispatch.python import enable_python_dispatcher
    rec = Recording(arg_names=_input_names(model, inputs))
    ref_of = RefMap()
    index = index or ModelIndex.of(model)
    state = {id(t): n for n, t in [*index.parameters, *index.buffers]}

    leaves, rec.in_spec = flatten((tuple(inputs.args), dict(inputs.kwargs)))
    top = list(inputs.args) + list(inputs.kwargs.values())
    for name, arg in zip(rec.arg_names, top):
        arg_leaves = [arg] if type(arg) is torch.Tensor else pytree.tree_leaves(arg)
        for k, leaf in enumerate(arg_leaves):
            pname = name if len(arg_leaves) == 1 else f"{name}_{k}"
            ref = None
            if isinstance(leaf, torch.Tensor):
                ref = len(rec.meta)
                rec.meta[ref], rec.names[ref] = (tuple(leaf.shape), leaf.dtype), pname
                ref_of[leaf] = ref
            rec.inputs.append((pname, ref, leaf))
    if len(rec.inputs) != len(leaves):
        raise NotRecordable("inputs hold containers whose leaves cannot be named")

    def attr_ref(t: torch.Tensor) -> int:
        target = state.get(id(t))
        ref = len(rec.meta)
        if target is None:  # a tensor the model holds outside its state, or made off the record
            target, name = f"_prunec_constant{len(rec.attrs)}", f"c_lifted_tensor_{len(rec.attrs)}"
            rec.suspicious.append(name)
        else:  # torch.export's placeholder names: p_conv1_weight, b_bn1_running_mean
            name = ("p_" if isinstance(t, torch.nn.Parameter) else "b_") + target.replace(".", "_").lower()
        rec.meta[ref], rec.names[ref] = (tuple(t.shape), t.dtype), name
        rec.attrs[ref] = (target, t)
        ref_of[t] = ref
        return ref

    with contextlib.ExitStack() as stack:
        stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")
        stack.enter_context(torch.no_grad())
        stack.enter_context(_mha_fastpath_off())
        stack.enter_context(_refuse_user_autograd_functions())
        stack.enter_context(_refuse_data_escapes())
        modules = _ModuleStack()
        stack.enter_context(enable_python_dispatcher())
        recorder = _Recorder(rec, ref_of, attr_ref, modules, memo=memo)
        stack.enter_context(recorder)
        stack.enter_context(_instrumented(index, modules, recorder if memo else None))
        out = inputs.call(model)

    out_leaves, rec.out_spec = flatten(out)
    rec.outputs = [recorder._ref(leaf) for leaf in out_leaves]
    return RecordedProgram(rec), out, recorder.skipped


def replay(program: RecordedProgram, inputs: ExampleInputs) -> Any:
    """Run the recorded calls again (no code generation), freeing values after their last use."""
    rec = program.recording
    last: dict[int, int] = {}
    for i, call in enumerate(rec.calls):
        for r in _refs((call.args, call.kwargs)):
            last[r] = i
    env: dict[int, Any] = {ref: t for ref, (_, t) in rec.attrs.items()}
    leaves = pytree.tree_leaves((tuple(inputs.args), dict(inputs.kwargs)))
    env.update({ref: leaf for (_, ref, _), leaf in zip(rec.inputs, leaves) if ref is not None})
    keep = {r for r in _refs(rec.outputs)}

    def value(a: Any) -> Any:
        return map_args(a, Ref, lambda r: env[r.id])
    for i, call in enumerate(rec.calls):
        out = call.target(*(value(a) for a in call.args), **{k: value(v) for k, v in call.kwargs.items()})
        outs = out if call.sequence else [out]
        for r, o in zip(call.outs, outs):
            if r is not None:
                env[r] = o
        for r in _refs((call.args, call.kwargs)):
            if last.get(r) == i and r not in keep and r not in rec.attrs:
                env.pop(r, None)
    return pytree.tree_unflatten([value(o) for o in rec.outputs], rec.out_spec)


def _refs(tree: Any) -> Iterator[int]:
    if isinstance(tree, Ref):
        yield tree.id
    elif isinstance(tree, (list, tuple)):
        for x in tree:
            yield from _refs(x)
    elif isinstance(tree, dict):
        for x in tree.values():
            yield from _refs(x)


def replays_exactly(program: RecordedProgram, inputs: ExampleInputs, expected: Any) -> bool:
    """Whether the recorded program reproduces the eager outputs on the example inputs."""
    if any(t.device.type == "meta" for t in inputs.tensors()):
        return True  # nothing to compare on the meta device; the ops were recorded as dispatched
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = replay(program, inputs)
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
