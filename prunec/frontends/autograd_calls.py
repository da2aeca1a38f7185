"""Keep every torch.autograd.Function call visible as one op although torch.export inlines it.

torch.export (non-strict, torch 2.x) traces through `Function.apply` and keeps only the ATen ops of
`forward`; nothing in the exported graph says they came from a Function. prunec treats a Function
like a `torch.library` custom op: one IR node, keyed ``autograd::<module>.<QualName>``, pinned
unless an op rule describes it (a Function often exists because its forward is not what it seems:
a custom kernel, a straight-through estimator, shape logic that export specialised away).

`record_autograd_calls()` wraps `Function.apply` while export runs. For each outermost call of a
user-defined Function it marks, in the fx node metadata (which export keeps):

- every node created during the call with the call's id (`CALL_KEY`),
- the nodes of its tensor arguments and results with (call id, position) (`ARG_KEY`, `OUT_KEY`).

`regions(graph)` reads the marks back. Both use private torch.fx hooks (the proxy mode of
make_fx); if those move, calls are simply not recorded and Functions stay inlined, as before.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx

from prunec.ir.graph import Graph, OpNode, Value
from prunec.rules.registry import autograd_key

CALL_KEY = "prunec_autograd_call"
ARG_KEY = "prunec_autograd_args"
OUT_KEY = "prunec_autograd_outs"


@dataclass
class AutogradCall:
    """One recorded `Function.apply` call."""

    id: int
    key: str
    """Op key: 'autograd::<module>.<QualName>'."""
    cls: type
    ports: tuple[str, ...]
    """Name of each positional argument (the forward's parameter names)."""
    attrs: dict[str, Any] = field(default_factory=dict)
    """Non-tensor arguments by port name."""


@dataclass
class Region:
    """The fx nodes of one call, with its argument and result nodes by position."""

    call: AutogradCall
    nodes: list[torch.fx.Node]
    args: dict[int, torch.fx.Node]
    outs: dict[int, torch.fx.Node]


def _port_names(cls: type, count: int) -> tuple[str, ...]:
    try:
        params = list(inspect.signature(cls.forward).parameters.values())  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        params = []
    # forward(ctx, *args) unless setup_context is overridden (then forward(*args))
    base = getattr(torch.autograd.function, "_SingleLevelFunction", torch.autograd.Function)
    own_setup = getattr(cls, "setup_context", None) is not getattr(base, "setup_context", None)
    if params and not own_setup:
        params = params[1:]
    names: list[str] = []
    for i in range(count):
        p = params[i] if i < len(params) else None
        plain = p is not None and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        names.append(p.name if plain else f"arg{i}")
    return tuple(names)


def _proxy_mode() -> Any:
    """make_fx's active proxy mode, or None (not tracing, or a torch without this hook)."""
    from torch.fx.experimental import proxy_tensor

    getter = getattr(proxy_tensor, "get_proxy_mode", None)
    return getter() if getter is not None else None


def _proxy_node(t: Any) -> torch.fx.Node | None:
    from torch.fx.experimental import proxy_tensor

    mode = _proxy_mode()
    if mode is None or not isinstance(t, torch.Tensor) or not hasattr(proxy_tensor, "get_proxy_slot"):
        return None
    slot = proxy_tensor.get_proxy_slot(t, mode.tracer, None)
    proxy = getattr(slot, "proxy", slot)
    return getattr(proxy, "node", None)


def _current_graph() -> torch.fx.Graph | None:
    mode = _proxy_mode()
    return None if mode is None else getattr(getattr(mode, "tracer", None), "graph", None)


class _Recorder:
    def __init__(self) -> None:
        self.calls: dict[int, AutogradCall] = {}
        self.depth = 0
        self.ids = itertools.count()

    def apply(self, original: Any, cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        from_torch = cls.__module__.split(".")[0] == "torch"  # torch's own Functions stay inlined
        graph = _current_graph() if self.depth == 0 and not from_torch else None
        if graph is None:
            return original.__get__(None, cls)(*args, **kwargs)
        call = AutogradCall(next(self.ids), autograd_key(cls), cls, _port_names(cls, len(args)))
        self.calls[call.id] = call
        for pos, a in enumerate(args):
            node = _proxy_node(a)
            if node is not None:
                node.meta.setdefault(ARG_KEY, []).append((call.id, pos))
            elif not isinstance(a, torch.Tensor):
                call.attrs[call.ports[pos]] = a
        last = next(reversed(graph.nodes), None)
        self.depth += 1
        try:
            out = original.__get__(None, cls)(*args, **kwargs)
        finally:
            self.depth -= 1
        created = graph.nodes if last is None else _after(last)
        for node in created:
            node.meta[CALL_KEY] = call.id
        leaves = list(out) if isinstance(out, (tuple, list)) else [out]
        for pos, o in enumerate(leaves):
            node = _proxy_node(o)
            if node is not None:
                node.meta.setdefault(OUT_KEY, []).append((call.id, pos))
        return out


def _after(node: torch.fx.Node) -> Iterator[torch.fx.Node]:
    cur = node.next
    while cur.op != "root":
        yield cur
        cur = cur.next


@contextlib.contextmanager
def record_autograd_calls() -> Iterator[dict[int, AutogradCall]]:
    """While active, mark the fx nodes of user-defined autograd.Function calls being traced.

    Yields the dict of recorded calls (filled as tracing proceeds).
    """
    function = torch.autograd.Function
    original = function.__dict__.get("apply")
    recorder = _Recorder()
    if original is None:  # a torch without a patchable apply: Functions stay inlined
        yield recorder.calls
        return

    def apply(cls: type, *args: Any, **kwargs: Any) -> Any:
        return recorder.apply(original, cls, args, kwargs)

    # Why a patch: Function.apply is a C method that neither TorchFunctionMode nor export's
    # tracer reports, and export keeps no trace of the call. The patch is undone on exit.
    function.apply = classmethod(apply)  # type: ignore[assignment]  # restored below
    try:
        yield recorder.calls
    finally:
        function.apply = original  # type: ignore[assignment]  # the original descriptor


def regions(graph: torch.fx.Graph, calls: dict[int, AutogradCall]) -> dict[int, Region]:
    """The recorded calls found in `graph` (the exported program's graph), by call id."""
    found: dict[int, Region] = {}
    for node in graph.nodes:
        cid = node.meta.get(CALL_KEY)
        if cid in calls:
            found.setdefault(cid, Region(calls[cid], [], {}, {})).nodes.append(node)
    for node in graph.nodes:
        for cid, pos in node.meta.get(ARG_KEY, ()):
            if cid in found:
                found[cid].args.setdefault(pos, node)
        for cid, pos in node.meta.get(OUT_KEY, ()):
            if cid in found:
                found[cid].outs.setdefault(pos, node)
    return found


def add_region(region: Region, graph: Graph, fx_to_value: dict[str, str],
               origin: tuple[str | None, str | None]) -> None:
    """Add one IR op for a recorded call: tensor arguments in, results out, attrs as arguments.

    Inputs are the call's tensor arguments by the forward's parameter names, then any tensor the
    forward read without receiving it (ports 'captured0', ...). Outputs are the call's results in
    order, then any other value of the call read after it. Results that are not computed inside
    the call (a Function returning an argument unchanged) are left out.
    """
    members = {n.name for n in region.nodes if n.op == "call_function"}
    inputs: list[tuple[str, str]] = []
    for pos in sorted(region.args):
        node = region.args[pos]
        if node.name in fx_to_value and node.name not in members:
            inputs.append((region.call.ports[pos], fx_to_value[node.name]))
    seen = {v for _, v in inputs}
    captured = 0
    for node in region.nodes:
        if node.op != "call_function":
            continue
        for a in node.all_input_nodes:
            value = fx_to_value.get(a.name)
            if a.name not in members and value is not None and value not in seen:
                inputs.append((f"captured{captured}", value))
                seen.add(value)
                captured += 1
    outs = [region.outs[p] for p in sorted(region.outs) if region.outs[p].name in members]
    outs += [n for n in region.nodes if n.name in members and n not in outs
             and any(u.name not in members for u in n.users)]
    outputs: list[str] = []
    for node in outs:
        val = node.meta.get("val")
        if not isinstance(val, torch.Tensor):
            continue
        graph.add_value(Value(node.name, tuple(int(s) for s in val.shape), str(val.dtype)))
        fx_to_value[node.name] = node.name
        outputs.append(node.name)
    name = f"{region.call.cls.__name__}_{region.call.id}"
    while graph.has_op(name) or name in members:
        name += "_"
    graph.add_op(OpNode(name, region.call.key, dict(region.call.attrs), origin[0], origin[1],
                        region.call.cls), inputs, outputs)
