"""The IR: a traced model as a bipartite networkx graph of ops and tensor values.

This is the only module that imports networkx. Ops and values are frozen records; the graph alone
owns connectivity. Edges run value -> op (an input, keyed by port name) and op -> value (an output,
keyed by output index).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType

import networkx as nx

from prunec.errors import IRError

_EMPTY: Mapping[str, object] = MappingProxyType({})


class ValueKind(str, Enum):
    """Where a value comes from."""

    INPUT = "input"  # a model input
    PARAM = "param"  # a parameter, named in the model's state_dict
    BUFFER = "buffer"  # a persistent buffer, named in the model's state_dict
    CONSTANT = "constant"  # a tensor the model holds but not in state_dict (never pruned)
    ACTIVATION = "activation"  # computed by an op


_STATE_KINDS = frozenset({ValueKind.PARAM, ValueKind.BUFFER})


@dataclass(frozen=True, slots=True)
class Value:
    """A tensor flowing between ops."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    kind: ValueKind = ValueKind.ACTIVATION
    param: str | None = None
    """For PARAM/BUFFER: its name in the original model's state_dict."""
    aliases: tuple[str, ...] = ()
    """Other state_dict names of the same tensor (tied weights)."""

    @property
    def rank(self) -> int:
        """Number of axes."""
        return len(self.shape)

    @property
    def is_state(self) -> bool:
        """True for parameters and persistent buffers (the things pruning slices)."""
        return self.kind in _STATE_KINDS


@dataclass(frozen=True, eq=False, slots=True)
class OpNode:
    """One operation. `op` is an open key: 'aten.conv2d', 'onnx::Conv', 'mylib.fused_attn'."""

    name: str
    op: str
    attrs: Mapping[str, object] = field(default_factory=lambda: _EMPTY)
    """Non-tensor arguments by schema name (normalized: groups, dim, eps, ...)."""
    origin: str | None = None
    """Module path (torch) or node name (ONNX), for messages."""
    module_type: str | None = None
    """Class of the innermost module that ran this op, when known."""
    target: object | None = None
    """The callable the frontend traced (an OpOverload for torch), for interpreters."""

    def __repr__(self) -> str:
        return f"OpNode({self.name!r}, {self.op!r})"


def _op_key(name: str) -> tuple[str, str]:
    return ("op", name)


def _value_key(name: str) -> tuple[str, str]:
    return ("value", name)


class Graph:
    """A traced model: ops and values in a networkx.MultiDiGraph; edges carry port names.

    The passes query the adjacency dicts below (the same connectivity, kept in step); the networkx
    graph itself is built on first use of `nx_graph()`, so tracing pays nothing for it.
    """

    def __init__(self) -> None:
        self._g: nx.MultiDiGraph | None = None
        self._ops: list[OpNode] = []
        self._values: dict[str, Value] = {}
        self._op_by_name: dict[str, OpNode] = {}
        self._input_values: dict[str, list[tuple[str, Value]]] = {}
        self._output_values: dict[str, list[Value]] = {}
        self._state: list[Value] = []
        self._producer: dict[str, str] = {}
        self._consumers: dict[str, list[tuple[str, str]]] = {}
        self.graph_inputs: list[str] = []
        self.graph_outputs: list[str] = []
        self._read_before_defined = False
        """Some op was added after an op reading one of its outputs (lint then checks every op)."""

    # -- construction --------------------------------------------------------------------------
    def add_value(self, value: Value) -> Value:
        """Add a value; names must be unique."""
        if value.name in self._values:
            raise IRError(f"value {value.name!r} is defined twice; frontends must name values uniquely")
        self._values[value.name] = value
        if value.is_state:
            self._state.append(value)
        self._consumers[value.name] = []
        self._g = None
        return value

    def add_op(self, op: OpNode, inputs: list[tuple[str, str]], outputs: list[str]) -> OpNode:
        """Add an op reading `inputs` ([(port, value name)]) and defining `outputs` (value names).

        Ops must be added in topological order: every input must already exist.
        """
        name, values, producer = op.name, self._values, self._producer
        if name in self._op_by_name:
            raise IRError(f"op {name!r} is defined twice; frontends must name ops uniquely")
        try:
            ins = [(port, values[v]) for port, v in inputs]
        except KeyError:
            missing = next(v for _, v in inputs if v not in values)
            raise IRError(f"op {name!r} reads undefined value {missing!r}; add values first") from None
        try:
            outs = [values[v] for v in outputs]
        except KeyError:
            missing = next(v for v in outputs if v not in values)
            raise IRError(f"op {name!r} defines unknown value {missing!r}; add it first") from None
        for vname in outputs:
            if vname in producer:
                raise IRError(f"value {vname!r} has two producers: {producer[vname]!r} and {name!r}")
        self._ops.append(op)
        self._op_by_name[name] = op
        self._input_values[name] = ins
        self._output_values[name] = outs
        consumers = self._consumers
        for port, vname in inputs:
            consumers[vname].append((name, port))
        for vname in outputs:
            if consumers[vname]:
                self._read_before_defined = True
            producer[vname] = name
        self._g = None
        return op

    # -- queries -------------------------------------------------------------------------------
    def ops(self) -> Iterator[OpNode]:
        """Ops in topological order."""
        return iter(self._ops)

    def values(self) -> Iterator[Value]:
        """All values in definition order."""
        return iter(self._values.values())

    def value(self, name: str) -> Value:
        """The value called `name`."""
        try:
            return self._values[name]
        except KeyError:
            raise IRError(f"no value named {name!r} in the graph") from None

    def op(self, name: str) -> OpNode:
        """The op called `name`."""
        try:
            return self._op_by_name[name]
        except KeyError:
            raise IRError(f"no op named {name!r} in the graph") from None

    def has_op(self, name: str) -> bool:
        """Whether an op of that name exists."""
        return name in self._op_by_name

    def inputs(self, op: OpNode) -> list[tuple[str, Value]]:
        """The op's tensor inputs as (port, value), in argument order."""
        return list(self._input_values[op.name])

    def outputs(self, op: OpNode) -> list[Value]:
        """The op's output values, in order."""
        return list(self._output_values[op.name])

    def producer(self, value: Value | str) -> OpNode | None:
        """The op that defines `value`, or None for inputs, parameters and constants."""
        name = value if isinstance(value, str) else value.name
        op = self._producer.get(name)
        return None if op is None else self._op_by_name[op]

    def consumers(self, value: Value | str) -> list[tuple[OpNode, str]]:
        """The ops that read `value`, with the port they read it on."""
        name = value if isinstance(value, str) else value.name
        return [(self._op_by_name[o], port) for o, port in self._consumers[name]]

    def state_values(self) -> list[Value]:
        """Parameters and persistent buffers, in definition order."""
        return list(self._state)

    def __len__(self) -> int:
        return len(self._ops)

    def num_values(self) -> int:
        """Number of values."""
        return len(self._values)

    def nx_graph(self) -> nx.MultiDiGraph:
        """A read-only view of the underlying networkx graph (for drawing and custom analyses)."""
        if self._g is None:
            g = nx.MultiDiGraph()
            g.add_nodes_from(_value_key(name) for name in self._values)
            for op in self._ops:
                g.add_node(_op_key(op.name))
                for port, v in self._input_values[op.name]:
                    g.add_edge(_value_key(v.name), _op_key(op.name), key=port)
                for i, v in enumerate(self._output_values[op.name]):
                    g.add_edge(_op_key(op.name), _value_key(v.name), key=i)
            self._g = g
        return self._g.copy(as_view=True)

    def lint(self) -> None:
        """Check structural invariants; raise IRError naming the first broken one."""
        if self._read_before_defined:  # else every op was added after the producers of its inputs
            defined: set[str] = {v.name for v in self._values.values() if v.name not in self._producer}
            for op in self._ops:
                for port, v in self._input_values[op.name]:
                    if v.name not in defined:
                        raise IRError(f"op {op.name!r} reads {v.name!r} on port {port!r} before it is defined")
                defined.update(v.name for v in self._output_values[op.name])
        for name in self.graph_outputs:
            if name not in self._values:
                raise IRError(f"graph output {name!r} is not a value of the graph")
