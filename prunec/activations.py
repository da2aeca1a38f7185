"""Taps on the traced program: record the inputs of chosen ops while calibration batches run.

Data-driven criteria and the least-squares refit need activations at precise places (the input of
the conv that reads a channel, say). The traced program names every op, so a tap replaces one
fx node's callable by a wrapper that hands its inputs to a sink and then runs the op unchanged.
`consumer_inputs` finds, for one member slice of a group, the activation that the member multiplies
and the index of each of its rows on that activation's channel axis, from the atom components alone
(no layer-type branching).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from prunec.analysis.groups import Slice
from prunec.analysis.result import Analysis
from prunec.errors import InputError
from prunec.inputs import ExampleInputs
from prunec.ir.graph import Value
from prunec.ir.slots import Slot
from prunec.rewrite.resize import Args

Sink = Callable[[str, Args], None]
"""Called with (op name, the op's arguments by schema name) each time a tapped op runs."""


@dataclass(frozen=True)
class InputTap:
    """The activation that a member slice multiplies: op input `port`, channel axis `axis`.

    `rows[i]` is the index on `axis` that row i of the member (its i-th entry of `indices`) reads.
    """

    op: str
    port: str
    value: str
    axis: int
    rows: np.ndarray


class _Tap:
    """Callable standing in for one fx node's target: report the arguments, then run the op."""

    def __init__(self, target: Any, op: str, sink: Sink) -> None:
        self.target = target
        self.op = op
        self.sink = sink
        self.__name__ = f"tap_{op}"  # fx code generation names the callable
        self.__qualname__ = self.__name__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.sink(self.op, Args(self.target, args, kwargs))
        return self.target(*args, **kwargs)


def tapped_module(gm: torch.fx.GraphModule, ops: Iterable[str], sink: Sink) -> torch.fx.GraphModule:
    """Make `gm` report the arguments of the named ops to `sink` (edits `gm`'s graph in place)."""
    wanted = set(ops)
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.name in wanted:
            node.target = _Tap(node.target, node.name, sink)
    gm.recompile()
    return gm


def capture_input(gm: torch.fx.GraphModule, op: str, port: str, batch: ExampleInputs) -> torch.Tensor | None:
    """Run `gm` on `batch` and return the tensor op `op` received on `port` (gm is left unchanged)."""
    node = next((n for n in gm.graph.nodes if n.op == "call_function" and n.name == op), None)
    if node is None:
        return None
    seen: list[torch.Tensor] = []

    def sink(name: str, args: Args) -> None:
        x = port_tensor(args, port)
        if x is not None and not seen:
            seen.append(x.detach())
    original = node.target
    node.target = _Tap(original, op, sink)
    gm.recompile()
    try:
        with torch.no_grad():
            batch.call(gm)
    finally:
        node.target = original
        gm.recompile()
    return seen[0] if seen else None


def traced_module(analysis: Analysis) -> torch.fx.GraphModule:
    """A fresh GraphModule of the traced program; it shares parameter storage with the model."""
    return analysis.source.exported.module()


def _signature(inputs: ExampleInputs) -> tuple[tuple[tuple[int, ...], str], ...]:
    return tuple((tuple(t.shape), str(t.dtype)) for t in inputs.tensors())


class ShapeTraces:
    """The analysis for each distinct calibration input shape.

    The traced program is specialised to the example inputs' shapes. A batch of another shape gets
    the model traced again; its ops are checked against the analysis' by name and key, so taps and
    references keyed by op name keep meaning the same op.
    """

    def __init__(self, analysis: Analysis, model: torch.nn.Module) -> None:
        self.analysis = analysis
        self.model = model
        self._by_sig = {_signature(analysis.source.inputs): analysis}

    def same_shapes(self, batch: ExampleInputs) -> bool:
        """Whether `batch` has the example inputs' shapes and dtypes."""
        return _signature(batch) == _signature(self.analysis.source.inputs)

    def for_batch(self, batch: ExampleInputs) -> Analysis:
        """The analysis whose traced program runs on `batch` (the original one when shapes match)."""
        sig = _signature(batch)
        if sig not in self._by_sig:
            from prunec.frontends.torch_export import trace

            traced = trace(self.model, batch)
            mine = [(op.name, op.op) for op in self.analysis.graph.ops()]
            theirs = [(op.name, op.op) for op in traced.graph.ops()]
            if mine != theirs:
                raise InputError(
                    f"calibration batch {batch.describe()} traces to a different program than the "
                    f"example inputs {self.analysis.source.inputs.describe()} (the model's ops depend "
                    "on the input shape); pass calibration batches with the example inputs' shapes")
            self._by_sig[sig] = dataclasses.replace(self.analysis, source=traced)
        return self._by_sig[sig]


def run_batches(gm: torch.fx.GraphModule, batches: Iterable[ExampleInputs]) -> None:
    """Run `gm` on every batch without gradients (taps collect what they need)."""
    with torch.no_grad():
        for batch in batches:
            batch.call(gm)


def _state_value(analysis: Analysis, param: str) -> Value | None:
    for v in analysis.graph.state_values():
        if v.param == param or param in v.aliases:
            return v
    return None


def _labels(analysis: Analysis, value: str, axis: int, indices: np.ndarray | None = None) -> np.ndarray:
    table = analysis.coupling.atoms
    sid = table.slot_id(Slot(value, axis))
    return analysis.coupling.labels[table.atoms(sid, indices)]


def consumer_inputs(analysis: Analysis, member: Slice) -> list[InputTap]:
    """Activations that `member` multiplies as an input (a conv/linear input column, say).

    A member qualifies at an op that reads its parameter when its atoms share components with one
    axis of a non-state input of that op and with no axis of the op's outputs: the member then
    weighs an incoming channel, rather than producing or rescaling one.
    """
    pv = _state_value(analysis, member.param)
    if pv is None or member.dim >= pv.rank:
        return []
    graph = analysis.graph
    mine = _labels(analysis, pv.name, member.dim, np.asarray(member.indices, dtype=np.int64))
    mine_set = set(mine.tolist())
    taps: list[InputTap] = []
    for op, _port in graph.consumers(pv):
        out_labels: set[int] = set()
        for out in graph.outputs(op):
            for k in range(out.rank):
                out_labels.update(_labels(analysis, out.name, k).tolist())
        if mine_set & out_labels:
            continue
        for port, v in graph.inputs(op):
            if v.is_state:
                continue
            for k in range(v.rank):
                labels = _labels(analysis, v.name, k)
                first: dict[int, int] = {}
                for j, lab in enumerate(labels.tolist()):
                    first.setdefault(lab, j)
                if all(lab in first for lab in mine_set):
                    rows = np.asarray([first[lab] for lab in mine.tolist()], dtype=np.int64)
                    taps.append(InputTap(op.name, port, v.name, k, rows))
                    break
    return taps


class ChannelEnergy:
    """Sum of squares and element count per channel of tapped activations, over batches."""

    def __init__(self) -> None:
        self.sq: dict[tuple[str, str, int], torch.Tensor] = {}
        self.count: dict[tuple[str, str, int], int] = {}

    def sink_for(self, wanted: dict[str, list[tuple[str, int]]]) -> Sink:
        """A sink recording the (port, axis) pairs listed per op name."""
        def sink(op: str, args: Args) -> None:
            for port, axis in wanted.get(op, ()):
                x = port_tensor(args, port)
                if x is None:
                    continue
                x = x.detach().float()
                dims = [d for d in range(x.dim()) if d != axis]
                key = (op, port, axis)
                sq = x.pow(2).sum(dim=dims) if dims else x.pow(2)
                self.sq[key] = self.sq.get(key, 0) + sq  # type: ignore[operator]
                self.count[key] = self.count.get(key, 0) + x.numel() // max(1, x.shape[axis])
        return sink

    def rms(self, tap: InputTap) -> torch.Tensor | None:
        """Root mean square of each member row's input channel, or None if never seen."""
        key = (tap.op, tap.port, tap.axis)
        if key not in self.sq:
            return None
        per_channel = (self.sq[key] / max(1, self.count[key])).sqrt()
        return per_channel[torch.as_tensor(tap.rows, dtype=torch.long, device=per_channel.device)]


def port_tensor(args: Args, port: str) -> torch.Tensor | None:
    """The tensor passed on `port` ('input', or 'tensors.1' for list arguments)."""
    name, _, j = port.partition(".")
    value = args.get(name)
    if j and isinstance(value, (list, tuple)):
        value = value[int(j)]
    return value if isinstance(value, torch.Tensor) else None
