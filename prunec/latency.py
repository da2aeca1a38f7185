"""Latency tables: how long each op of a traced model takes at a few widths, measured and cached.

`build_table` rewrites the traced program at a few uniform widths (100%, 75%, 50%, 25% of every
group's channels), runs each width once through an fx interpreter that times every op on the
device the example inputs live on, and records, per op, (size, seconds) pairs, where size is the
op's MACs (convs, matmuls, attention) or the elements it reads and writes (everything else). A
candidate pruning is priced by interpolating each op at its new size and adding up, so a
selection pass can bisect on predicted latency; `allocate_latency` then measures the real pruned
program end to end and corrects the goal until the measured ratio meets the target.

Tables are cached as JSON under $PRUNEC_CACHE (default ~/.cache/prunec)/latency, keyed by the
graph, the device, the dtype, the torch version and the thread count. Nothing here is specific to
a device: on a GPU the clock synchronises before reading the time, and the same code runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from prunec.analysis.cost import node_size
from prunec.analysis.result import Analysis
from prunec.errors import InputError, TargetError
from prunec.inputs import ExampleInputs

WIDTHS = (1.0, 0.75, 0.5, 0.25)


class Clock(Protocol):
    """Times one op call and one whole-model call, in seconds."""

    name: str

    def time_op(self, fn: Callable[[], Any], device: torch.device) -> float:
        """Seconds `fn()` takes (it may be called several times)."""
        ...

    def time_model(self, module: torch.nn.Module, inputs: ExampleInputs) -> float:
        """Seconds one forward pass of `module` on `inputs` takes."""
        ...


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class WallClock:
    """Fastest wall time over `repeats` runs after `warmup` runs, synchronising accelerators.

    The minimum rather than the median: other processes on the machine only ever add time.
    """

    repeats: int = 5
    warmup: int = 1
    name: str = "wall"

    def time_op(self, fn: Callable[[], Any], device: torch.device) -> float:
        for _ in range(self.warmup):
            fn()
        times = []
        for _ in range(self.repeats):
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - t0)
        return min(times)

    def time_model(self, module: torch.nn.Module, inputs: ExampleInputs) -> float:
        device = _device_of(inputs)
        with torch.no_grad():
            return self.time_op(lambda: inputs.call(module), device)


def _device_of(inputs: ExampleInputs) -> torch.device:
    tensors = inputs.tensors()
    if not tensors:
        raise InputError("latency measurement needs at least one input tensor")
    return tensors[0].device


class _TimingInterpreter(torch.fx.Interpreter):
    """Runs a GraphModule op by op, timing each call_function node with `clock`."""

    def __init__(self, gm: torch.fx.GraphModule, clock: Clock, device: torch.device) -> None:
        super().__init__(gm)
        self.clock = clock
        self.device = device
        self.times: dict[str, float] = {}

    def call_function(self, target: Any, args: Any, kwargs: Any) -> Any:
        name = self.current_name
        schema = getattr(target, "_schema", None)
        mutable = schema is not None and schema.is_mutable

        def call() -> Any:
            if mutable:  # in-place ops get fresh copies each time, so repeats see the same values
                a, k = torch.utils._pytree.tree_map(
                    lambda t: t.clone() if isinstance(t, torch.Tensor) else t, (args, kwargs))
                return target(*a, **k)
            return target(*args, **kwargs)
        if schema is not None:
            self.times[name] = self.clock.time_op(call, self.device)
        return target(*args, **kwargs)

    def run_node(self, n: torch.fx.Node) -> Any:
        self.current_name = n.name
        return super().run_node(n)


@dataclass(frozen=True)
class LatencyTable:
    """Per op: (size, seconds) points measured at a few widths, ascending by size."""

    key: str
    device: str
    points: Mapping[str, tuple[tuple[float, float], ...]]
    measured: Mapping[str, float] = field(default_factory=dict)
    """Width (as text) -> measured end-to-end seconds of the program rewritten at that width."""

    def op_seconds(self, op: str, size: float) -> float:
        """Interpolated seconds of `op` at `size` (linear between points, clamped at the ends)."""
        pts = self.points.get(op)
        if not pts:
            return 0.0
        xs = np.asarray([p[0] for p in pts], dtype=np.float64)
        ys = np.asarray([p[1] for p in pts], dtype=np.float64)
        if len(xs) == 1 or size >= xs[-1]:
            return float(ys[-1] * (size / xs[-1] if xs[-1] > 0 else 1.0))
        if size <= xs[0]:  # below the smallest width: scale down, never under half of it
            return float(max(ys[0] * size / xs[0], ys[0] * 0.5)) if xs[0] > 0 else float(ys[0])
        return float(np.interp(size, xs, ys))

    def predict(self, analysis: Analysis, shapes: Mapping[str, tuple[int, ...]]) -> float:
        """Predicted seconds of the program with these value shapes."""
        graph = analysis.graph
        return sum(self.op_seconds(op.name, node_size(graph, op, shapes)) for op in graph.ops())

    def to_json(self) -> str:
        """The table as JSON text."""
        return json.dumps({"key": self.key, "device": self.device, "measured": dict(self.measured),
                           "points": {k: [list(p) for p in v] for k, v in self.points.items()}})

    @classmethod
    def from_json(cls, text: str) -> LatencyTable:
        """Read a table written by `to_json`."""
        d = json.loads(text)
        return cls(d["key"], d["device"], {k: tuple((float(a), float(b)) for a, b in v)
                                           for k, v in d["points"].items()}, d.get("measured", {}))


def cache_dir() -> Path:
    """Where latency tables are cached: $PRUNEC_CACHE/latency (default ~/.cache/prunec/latency)."""
    root = os.environ.get("PRUNEC_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "prunec")
    return Path(root) / "latency"


def table_key(analysis: Analysis, inputs: ExampleInputs, clock: Clock, widths: tuple[float, ...]) -> str:
    """Hash of everything a table depends on: ops and shapes, device, dtype, torch, threads, clock."""
    h = hashlib.sha256()
    graph = analysis.graph
    for op in graph.ops():
        h.update(op.name.encode() + op.op.encode())
        for _, v in graph.inputs(op):
            h.update(f"{v.shape}{v.dtype}".encode())
    device = _device_of(inputs)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu{torch.get_num_threads()}"
    extra = [inputs.describe(), str(device), name, torch.__version__, clock.name, repr(widths),
             repr(getattr(clock, "repeats", ""))]
    h.update("|".join(extra).encode())
    return h.hexdigest()[:24]


def _width_masks(analysis: Analysis, width: float) -> dict[int, tuple[int, ...]]:
    """Remove the last channels of every group so that `width` of them stay (scores do not matter)."""
    masks = {}
    for g in analysis.groups:
        keep = max(1, int(round(g.channel_count * width)))
        masks[g.id] = tuple(range(keep, g.channel_count))
    return masks


def _program(analysis: Analysis, masks: Mapping[int, tuple[int, ...]]) -> torch.fx.GraphModule:
    from prunec.rewrite import rewrite_graph_module

    return rewrite_graph_module(analysis, analysis.keep_mask(masks))


def build_table(analysis: Analysis, inputs: ExampleInputs, *, clock: Clock | None = None,
                widths: tuple[float, ...] = WIDTHS, cache: bool = True) -> LatencyTable:
    """Measure every op of the traced program at each width (or load the cached table)."""
    clock = clock or WallClock()
    key = table_key(analysis, inputs, clock, widths)
    path = cache_dir() / f"{key}.json"
    if cache and path.exists():
        return LatencyTable.from_json(path.read_text())
    device = _device_of(inputs)
    flat = list(torch.utils._pytree.tree_flatten((tuple(inputs.args), dict(inputs.kwargs)))[0])
    points: dict[str, list[tuple[float, float]]] = {}
    measured: dict[str, float] = {}
    for w in widths:
        masks = _width_masks(analysis, w)
        gm = _program(analysis, masks)
        shapes = analysis.new_shapes(analysis.keep_mask(masks))
        interp = _TimingInterpreter(gm, clock, device)
        with torch.no_grad():
            interp.run(*flat)
        for name, seconds in interp.times.items():
            if analysis.graph.has_op(name):
                size = node_size(analysis.graph, analysis.graph.op(name), shapes)
                points.setdefault(name, []).append((float(size), float(seconds)))
        measured[f"{w:g}"] = clock.time_model(gm, inputs)
    table = LatencyTable(key, str(device), {k: tuple(sorted(set(v))) for k, v in points.items()}, measured)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(table.to_json())
    return table


@dataclass
class LatencyModel:
    """A latency table plus the clock that checks a chosen pruning end to end."""

    table: LatencyTable
    clock: Clock = field(default_factory=WallClock)
    rounds: int = 5
    """Interleaved dense/pruned measurements per end-to-end check (the fastest of each counts)."""

    @classmethod
    def build(cls, analysis: Analysis, inputs: ExampleInputs, *, clock: Clock | None = None,
              widths: tuple[float, ...] = WIDTHS, cache: bool = True) -> LatencyModel:
        """Measure (or load) the table for this analysis on the inputs' device."""
        clock = clock or WallClock()
        return cls(build_table(analysis, inputs, clock=clock, widths=widths, cache=cache), clock)

    def predicted_fraction(self, analysis: Analysis) -> Callable[[dict[int, tuple[int, ...]]], float]:
        """Masks -> predicted latency of the pruned program over the dense one."""
        dense = self.table.predict(analysis, {v.name: v.shape for v in analysis.graph.values()})

        def cost(masks: dict[int, tuple[int, ...]]) -> float:
            if dense <= 0:
                return 1.0
            return self.table.predict(analysis, analysis.new_shapes(analysis.keep_mask(masks))) / dense
        return cost

    def measured_fraction(self, analysis: Analysis, inputs: ExampleInputs,
                          masks: Mapping[int, tuple[int, ...]],
                          model: torch.nn.Module | None = None) -> float:
        """Measured latency of the pruned model over the dense one's (fastest of interleaved runs).

        With `model`, the same-class rewrite of a copy is timed against `model` (what prune
        returns); without it, or if that rewrite fails, the traced programs are.
        """
        dense, pruned = _candidates(analysis, masks, model)
        a, b = [], []
        for _ in range(self.rounds):  # interleave, so that drifting machine load hits both alike
            a.append(self.clock.time_model(dense, inputs))
            b.append(self.clock.time_model(pruned, inputs))
        return min(b) / min(a)


def _candidates(analysis: Analysis, masks: Mapping[int, tuple[int, ...]], model: torch.nn.Module | None
                ) -> tuple[torch.nn.Module, torch.nn.Module]:
    if model is not None:
        import copy

        from prunec.rewrite import rewrite_module

        try:
            pruned = copy.deepcopy(model)
            rewrite_module(pruned, analysis, analysis.keep_mask(masks))
            with torch.no_grad():
                analysis.source.inputs.call(pruned.eval())
            return model.eval(), pruned
        except Exception:
            pass
    return _program(analysis, {}), _program(analysis, masks)


def allocate_latency(state: Any, family: Any, target: float, tolerance: float,
                     latency: LatencyModel | None, rounds: int = 4,
                     max_ratio: float = 0.99) -> tuple[dict[int, tuple[int, ...]], str]:
    """Masks whose measured latency is `target` of the dense model's, within `tolerance` if possible.

    Bisects on the table's prediction, measures the pruned program, and rescales the goal by
    target / measured until the measurement agrees (at most `rounds` measurements; the closest is
    kept). Raises TargetError when even the smallest allowed model is slower than the target.
    """
    from prunec.allocation import allocate

    analysis, scores = state.analysis, state.scores
    latency = latency or LatencyModel.build(analysis, state.inputs)
    predicted = latency.predicted_fraction(analysis)
    goal, best = target, None
    for _ in range(rounds):
        try:
            found = allocate(analysis.groups, scores, family, predicted, goal, "latency", tolerance=1.0,
                             max_ratio=max_ratio)
        except TargetError:
            if best is not None:
                break
            raise
        measured = latency.measured_fraction(analysis, state.inputs, found.masks, state.model)
        if best is None or abs(measured - target) < abs(best[1] - target):
            best = (found, measured)
        if abs(measured - target) <= tolerance * target:
            break
        goal = min(1.0, max(1e-3, goal * target / max(measured, 1e-9)))
    assert best is not None  # the first round either returns a plan or raises
    found, measured = best
    note = (f"latency selection: predicted {found.kept:.3f}, measured {measured:.3f} of the dense "
            f"latency (target {target:g})")
    return found.masks, note
