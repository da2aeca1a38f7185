"""The op-rule API: how a rule sees one node and what it may answer.

A rule is a pure function ``rule(node: OpView) -> RuleResult``. It returns a list of facts about the
node's channel axes, or ``decline(reason)``:

- ``couple(a, b, map)``: slots a and b keep or drop the same channels;
- ``pin(slot, reason)``: these channels must stay (optionally only some indices);
- ``reduces(slot, reason)``: the op mixes the channels of this axis (a sum, mean, norm...). The
  channels stay prunable, but zeroing them is not the same as removing them, so the analysis marks
  their groups as not zero-invariant and verification uses the removal reference at this node;
- ``free(slot)``: the op reads only this slot's size or nothing of it (neither coupled nor pinned);
- ``alternatives([...], labels)``: several valid couplings (e.g. which factor of a reshape carries
  the channels); the analysis picks one, preferring the first whose channels are not pinned.

Any axis of any input or output that the answer does not mention at all is pinned: an op nobody
described never passes channels through by accident.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

from prunec.ir.slots import ChannelMap, Coupling, Identity, Slot

if TYPE_CHECKING:
    from prunec.ir.graph import Graph, OpNode, Value


@dataclass(frozen=True)
class Pin:
    """Keep these channels of `slot` (all of them when `indices` is None)."""

    slot: Slot
    reason: str
    indices: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Reduces:
    """The op mixes the channels of `slot`: removal differs from zeroing there."""

    slot: Slot
    reason: str


@dataclass(frozen=True)
class Free:
    """The op does not depend on the channels of `slot` (neither coupled nor pinned)."""

    slot: Slot


@dataclass(frozen=True)
class Alternatives:
    """Several valid ways to couple; the analysis picks one (the first unpinned, in order)."""

    options: tuple[tuple[Coupling | Pin | Reduces | Free, ...], ...]
    labels: tuple[str, ...]


@dataclass(frozen=True)
class Declined:
    """The rule refuses this node; every slot of the node is pinned with this reason."""

    reason: str


Fact = Union[Coupling, Pin, Reduces, Free, Alternatives]
RuleResult = Union[Sequence[Fact], Declined]
Rule = Callable[["OpView"], RuleResult]


def couple(a: Slot, b: Slot, map: ChannelMap | None = None) -> Coupling:
    """Slots `a` and `b` keep or drop the same channels, related by `map` (identity by default)."""
    return Coupling(a, b, map if map is not None else Identity())


def pin(slot: Slot, reason: str, indices: Sequence[int] | None = None) -> Pin:
    """Keep the channels of `slot` (or only `indices` of it), for `reason`."""
    return Pin(slot, reason, None if indices is None else tuple(int(i) for i in indices))


def reduces(slot: Slot, reason: str) -> Reduces:
    """The op mixes the channels of `slot` (sum, mean, norm, contraction with an activation)."""
    return Reduces(slot, reason)


def free(slot: Slot) -> Free:
    """The op does not depend on the channels of `slot`."""
    return Free(slot)


def alternatives(options: Sequence[Sequence[Fact]], labels: Sequence[str] | None = None) -> Alternatives:
    """Offer several valid couplings; the first whose coupled channels are not pinned wins."""
    opts = tuple(tuple(o) for o in options)
    labs = tuple(labels) if labels is not None else tuple(f"option {i}" for i in range(len(opts)))
    return Alternatives(opts, labs)  # type: ignore[arg-type]  # nested Alternatives are not allowed


def decline(reason: str) -> Declined:
    """Refuse the node: all its channels are pinned, and the report says `reason`."""
    return Declined(reason)


class TensorView:
    """A read-only view of one tensor input or output of a node."""

    def __init__(self, value: Value, port: str, param_derived: bool) -> None:
        self.value = value
        self.port = port
        self._param_derived = param_derived

    @property
    def name(self) -> str:
        """The value's name."""
        return self.value.name

    @property
    def shape(self) -> tuple[int, ...]:
        """Static shape."""
        return self.value.shape

    @property
    def rank(self) -> int:
        """Number of axes."""
        return len(self.value.shape)

    @property
    def is_param(self) -> bool:
        """True for a parameter/buffer, or a pure view (transpose, reshape, cast) of one."""
        return self._param_derived

    def size(self, axis: int) -> int:
        """Size of `axis` (negative counts from the end)."""
        return self.value.shape[axis]

    def axis(self, axis: int) -> Slot:
        """The slot of `axis` (negative counts from the end)."""
        rank = len(self.value.shape)
        if not -rank <= axis < rank:
            raise IndexError(f"axis {axis} out of range for {self.name!r} of shape {self.shape}")
        return Slot(self.value.name, axis % rank)

    @property
    def channel(self) -> Slot:
        """Axis 1, the channel axis of NCHW-style tensors."""
        return self.axis(1)

    def slots(self) -> list[Slot]:
        """Every axis of this tensor."""
        return [Slot(self.value.name, k) for k in range(self.rank)]

    def __repr__(self) -> str:
        return f"TensorView({self.name!r}, {self.shape})"


class OpView:
    """What a rule sees of one node: its tensors by port, its attributes, nothing else."""

    def __init__(self, graph: Graph, node: OpNode, param_derived: Callable[[str], bool]) -> None:
        self.node = node
        self._ins = [TensorView(v, p, param_derived(v.name)) for p, v in graph.inputs(node)]
        self._outs = [TensorView(v, str(i), False) for i, v in enumerate(graph.outputs(node))]
        self._by_port = {t.port: t for t in self._ins}

    @property
    def op(self) -> str:
        """The op key, e.g. 'aten.conv2d'."""
        return self.node.op

    @property
    def name(self) -> str:
        """The node's name."""
        return self.node.name

    def input(self, port: int | str) -> TensorView:
        """A tensor input by position among tensor inputs, or by its schema name."""
        if isinstance(port, int):
            return self._ins[port]
        return self._by_port[port]

    def has_input(self, port: int | str) -> bool:
        """Whether the node has that tensor input (optional inputs such as bias may be absent)."""
        if isinstance(port, int):
            return 0 <= port < len(self._ins)
        return port in self._by_port

    def input_or_none(self, port: str) -> TensorView | None:
        """The tensor input on `port`, or None when absent."""
        return self._by_port.get(port)

    @property
    def inputs(self) -> list[TensorView]:
        """All tensor inputs, in argument order."""
        return list(self._ins)

    def output(self, index: int = 0) -> TensorView:
        """The `index`-th output."""
        return self._outs[index]

    @property
    def outputs(self) -> list[TensorView]:
        """All outputs."""
        return list(self._outs)

    def attr(self, name: str, default: object = None) -> object:
        """A non-tensor argument by schema name."""
        return self.node.attrs.get(name, default)

    def int_attr(self, name: str, default: int = 0) -> int:
        """An integer argument by schema name."""
        value = self.node.attrs.get(name, default)
        return default if value is None else int(value)  # type: ignore[arg-type]  # schema says int
