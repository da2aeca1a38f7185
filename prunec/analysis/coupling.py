"""Coupling analysis: run every op's rule, union the coupled atoms, propagate pins.

The result is a labelling of atoms into components. A component is one zero-invariant unit of
channels (a ZIG, in OTO's terms): every atom in it is kept or removed together. A component is
pinned if any atom in it is pinned, and 'reduced' if any op mixes its atoms (removal then differs
from zeroing, and verification uses the removal reference at that op).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from prunec.analysis.atoms import AtomTable
from prunec.analysis.choices import Choice, Option, choose, first_open
from prunec.analysis.components import atom_components
from prunec.errors import UnsupportedOpError
from prunec.ir.graph import Graph, OpNode, Value, ValueKind
from prunec.ir.slots import ChannelMap, Coupling, Identity, Offset, Slot
from prunec.rules.api import Alternatives, Declined, Fact, Free, OpView, Pin, Reduces
from prunec.rules.registry import RuleEntry, RuleRegistry

# pin priorities: a higher one explains a pinned component better than a lower one
AUTO, IO, RULE, DECLINED = 0, 1, 2, 3


@dataclass(frozen=True)
class Pinned:
    """A node whose channels were left unpruned, and why."""

    node: str
    op: str
    reason: str
    origin: str | None = None

    def __str__(self) -> str:
        where = f" (module '{self.origin}')" if self.origin else ""
        return f"{self.node} [{self.op}]{where}: {self.reason}"


@dataclass
class _Compiled:
    """Facts of one answer (or one alternative) of a node with alternatives or a declined rule, as
    atoms and slot ids (nodes without alternatives are applied in batches from their _Relative).
    Fields a node does not use stay shared empty tuples."""

    edges: list[tuple[np.ndarray, np.ndarray]] | tuple = ()
    """Atom pairs of couplings with an index map."""
    ident: list[int] | tuple = ()
    """Identity couplings, flat: slot a, slot b, count, slot a, ... (atom ranges expanded in bulk
    by _solve)."""
    pins: list[tuple[np.ndarray, int, int]] | tuple = ()  # atoms, reason id, priority
    reductions: list[tuple[np.ndarray, int]] | tuple = ()
    mentioned: set[int] | frozenset = frozenset()

    def edge_arrays(self, table: AtomTable) -> list[tuple[np.ndarray, np.ndarray]]:
        """Every coupled atom pair, identity ranges included."""
        out = list(self.edges)
        flat = self.ident
        for sa, sb, n in zip(flat[0::3], flat[1::3], flat[2::3]):
            a0, b0 = int(table.slot_start[sa]), int(table.slot_start[sb])
            out.append((np.arange(a0, a0 + n, dtype=np.int64), np.arange(b0, b0 + n, dtype=np.int64)))
        return out


@dataclass
class _Relative:
    """A rule answer in node-local terms: slots are positions in the node's slot list (inputs'
    axes, then outputs' axes) and indices are relative to the slot. Built-in rules see only the
    node (op, attributes, tensor sizes), so nodes with the same signature share one answer."""

    edges: list[tuple[int, int, int, np.ndarray | None, np.ndarray | None]] = field(default_factory=list)
    """(local a, local b, identity count, index pairs a, b): index pairs None for identity."""
    pins: list[tuple[int, np.ndarray | None, str]] = field(default_factory=list)
    reductions: list[tuple[int, str]] = field(default_factory=list)
    mentioned: set[int] = field(default_factory=set)
    couplings: list[tuple[int, int, ChannelMap]] = field(default_factory=list)

    identity: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    """The identity couplings as arrays (local a, local b, count), made by identity_columns()."""
    unmentioned: list[int] | None = field(default=None, repr=False)
    """Local positions no fact mentions, made by unmentioned_positions()."""

    def identity_columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The identity couplings as arrays: local a, local b, count."""
        if self.identity is None:
            rows = [(la, lb, n) for la, lb, n, ia, _ in self.edges if ia is None]
            self.identity = tuple(np.asarray([r[i] for r in rows], dtype=np.int64) for i in range(3))  # type: ignore
        return self.identity  # type: ignore[return-value]

    def unmentioned_positions(self, slots: list[int]) -> list[int]:
        """Positions of `slots` (a node's slot list) that no fact mentions. The same for every node
        sharing this answer: they alias their tensors alike (that is part of the signature)."""
        if self.unmentioned is None:
            mentioned = {slots[la] for la in self.mentioned}
            self.unmentioned = [p for p, sid in enumerate(slots) if sid not in mentioned]
        return self.unmentioned


@dataclass
class _NodeFacts:
    """A node whose facts are applied one by one: it has alternatives, or its rule declined."""

    index: int
    node: OpNode
    slots: list[int]
    static: _Compiled
    choices: list[tuple[list[_Compiled], tuple[str, ...]]]
    static_relative: _Relative | None = None
    """The static answer and, per choice, its options, node-local (for the couplings a node stated)."""
    option_relatives: list[list[_Relative]] = field(default_factory=list)
    declined: str | None = None


@dataclass
class CouplingResult:
    """Components of atoms and what is known about each."""

    atoms: AtomTable
    labels: np.ndarray
    num_components: int
    comp_pinned: np.ndarray
    comp_pin_reason: np.ndarray
    comp_reduced: np.ndarray
    comp_reduce_reason: np.ndarray
    reasons: Sequence[str]
    pinned: list[Pinned]
    choices: dict[tuple[str, int], str]
    """Chosen alternative per (node, choice index), as its label."""
    iterations: int
    node_couplings: Mapping[str, list[Coupling]]
    reducing: set[str]
    """Nodes that mix channels of some coupled axis (where removal differs from zeroing)."""
    rules_used: dict[str, RuleEntry] = field(default_factory=dict)
    """Node -> the registered rule that answered for it (for explanations)."""
    comp_pin_atom: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    """Per component: an atom carrying the pin that `comp_pin_reason` reports (-1 if unpinned)."""


class _Reasons(Sequence[str]):
    """Reason texts by id. Texts naming a node are kept as their parts and formatted when read:
    a large graph states one per node, and few are ever read."""

    def __init__(self) -> None:
        self._items: list[str | tuple] = []
        self._ids: dict[object, int] = {}

    def id(self, text: str) -> int:
        """The id of a reason text."""
        return self._id(text)

    def at(self, reason: str, node: str) -> int:
        """The id of "`reason` (at 'node')"."""
        return self._id(("at", reason, node))

    def auto(self, op: str, value: str, axis: int) -> int:
        """The id of the reason an axis no fact mentions is pinned."""
        return self._id(("auto", op, value, axis))

    def _id(self, key: object) -> int:
        rid = self._ids.get(key)
        if rid is None:
            rid = self._ids[key] = len(self._items)
            self._items.append(key)  # type: ignore[arg-type]
        return rid

    def __getitem__(self, i: int) -> str:  # type: ignore[override]
        item = self._items[i]
        if isinstance(item, tuple):
            if item[0] == "at":
                item = f"{item[1]} (at '{item[2]}')"
            else:
                item = f"'{item[1]}' does not pass channels along axis {item[3]} of '{item[2]}'"
            self._items[i] = item
        return item

    def __len__(self) -> int:
        return len(self._items)


def _param_derived(graph: Graph, registry: RuleRegistry) -> set[str]:
    """Values that are parameters, or views of one (a rule may treat them as weights)."""
    derived = {v.name for v in graph.state_values()}
    for op in graph.ops():
        _note_derived(op, graph.inputs(op), graph.outputs(op), derived, registry)
    return derived


def _note_derived(op: OpNode, ins: list[tuple[str, Value]], outs: list[Value], derived: set[str],
                  registry: RuleRegistry) -> None:
    """Add `op`'s outputs to `derived` when it is a view-like op of a derived input 0 (ops are
    visited in topological order)."""
    if ins and ins[0][1].name in derived and registry.is_view_like(op.op):
        derived.update(v.name for v in outs)


def coupling_atoms(table: AtomTable, c: Coupling) -> tuple[np.ndarray, np.ndarray]:
    """The atom pairs a coupling joins (index pairs outside either slot are dropped)."""
    sa, sb = table.slot_id(c.a), table.slot_id(c.b)
    na, nb = int(table.slot_size[sa]), int(table.slot_size[sb])
    if type(c.map) is Identity:  # the common case, without index arrays: two aligned ranges
        n = min(na, nb)
        a0, b0 = int(table.slot_start[sa]), int(table.slot_start[sb])
        return np.arange(a0, a0 + n, dtype=np.int64), np.arange(b0, b0 + n, dtype=np.int64)
    ia, ib = c.map.pairs(na, nb)
    ok = (ia >= 0) & (ia < na) & (ib >= 0) & (ib < nb)
    return table.atoms(sa, ia[ok]), table.atoms(sb, ib[ok])


def _relative(facts: Sequence[Fact], table: AtomTable, local: dict[int, int], node: OpNode) -> _Relative:
    """The facts of one answer in node-local terms (`local`: slot id -> position in the node)."""
    out = _Relative()
    sizes = table.slot_sizes

    def own(slot: object) -> int:
        sid = table.slot_id(slot)  # type: ignore[arg-type]
        if sid not in local:
            raise _RuleBug(f"the rule mentions {slot}, which is not an input or output of '{node.name}'")
        return sid

    for f in facts:
        if isinstance(f, Coupling):
            sa, sb = own(f.a), own(f.b)
            la, lb, na, nb = local[sa], local[sb], sizes[sa], sizes[sb]
            if type(f.map) is Identity:  # the common case: two aligned ranges
                out.edges.append((la, lb, min(na, nb), None, None))
            elif type(f.map) is Offset and f.map.start >= 0 and f.map.start + na <= nb:  # a part in place
                ia = np.arange(na, dtype=np.int64)
                out.edges.append((la, lb, 0, ia, ia + f.map.start))
            else:
                ia, ib = f.map.pairs(na, nb)
                ok = (ia >= 0) & (ia < na) & (ib >= 0) & (ib < nb)
                out.edges.append((la, lb, 0, np.asarray(ia[ok], np.int64), np.asarray(ib[ok], np.int64)))
            out.mentioned.update((la, lb))
            out.couplings.append((la, lb, f.map))
        elif isinstance(f, Pin):
            la = local[own(f.slot)]
            idx = None if f.indices is None else np.asarray(f.indices, dtype=np.int64)
            out.pins.append((la, idx, f.reason))
            out.mentioned.add(la)
        elif isinstance(f, Reduces):
            la = local[own(f.slot)]
            out.reductions.append((la, f.reason))
            out.mentioned.add(la)
        elif isinstance(f, Free):
            out.mentioned.add(local[own(f.slot)])
        else:
            raise TypeError(f"rule answered {type(f).__name__}; expected couple/pin/reduces/free/alternatives")
    return out


def _materialize(rel: _Relative, slots: list[int], table: AtomTable, reasons: _Reasons, node: OpNode) -> _Compiled:
    """A node-local answer as atoms of this node's slots."""
    out = _Compiled()
    start = table.slot_start
    ident: list[int] = []
    edges: list[tuple[np.ndarray, np.ndarray]] = []
    for la, lb, n, ia, ib in rel.edges:
        sa, sb = slots[la], slots[lb]
        if ia is None:
            ident += (sa, sb, n)
        else:
            edges.append((int(start[sa]) + ia, int(start[sb]) + ib))  # type: ignore[operator]
    if ident:
        out.ident = ident
    if edges:
        out.edges = edges
    if rel.pins:
        out.pins = [(table.atoms(slots[la], idx), reasons.at(reason, node.name), RULE)
                    for la, idx, reason in rel.pins]
    if rel.reductions:
        out.reductions = [(table.atoms(slots[la]), reasons.at(reason, node.name))
                          for la, reason in rel.reductions]
    out.mentioned = {slots[la] for la in rel.mentioned}
    return out


def _frozen(v: object) -> object:
    if isinstance(v, (list, tuple)):
        return tuple(_frozen(x) for x in v)
    return v


def _signature(node: OpNode, ins: list[tuple[str, Value]], outs: list[Value], derived: set[str]) -> tuple:
    """What a built-in rule can see of `node` (op, attributes, tensor sizes, which inputs are
    parameters, which tensors are the same value); unhashable when some attribute is."""
    names: dict[str, int] = {}
    number = names.setdefault
    return (node.op, tuple([(k, _frozen(v)) for k, v in node.attrs.items()]) if node.attrs else (),
            tuple([(port, v.shape, v.name in derived, number(v.name, len(names))) for port, v in ins]),
            tuple([(v.shape, number(v.name, len(names))) for v in outs]))


class _RuleBug(Exception):
    pass


def _answer(entry: RuleEntry, graph: Graph, node: OpNode, derived: set[str], table: AtomTable,
            slots: list[int]) -> tuple[_Relative, list[tuple[list[_Relative], tuple[str, ...]]]] | str:
    """Run the rule on `node`: its facts in node-local terms, or the reason it declined or failed."""
    local: dict[int, int] = {}
    for i, sid in enumerate(slots):
        local.setdefault(sid, i)
    try:
        answer = entry.rule(OpView(graph, node, derived.__contains__))
        if isinstance(answer, Declined):
            return answer.reason
        static = _relative([f for f in answer if not isinstance(f, Alternatives)], table, local, node)
        choices = [([_relative(o, table, local, node) for o in alt.options], alt.labels)
                   for alt in answer if isinstance(alt, Alternatives)]
        return static, choices
    except Exception as exc:  # noqa: BLE001 - a failing rule pins its node, never crashes prunec
        return f"rule from {entry.source} failed: {type(exc).__name__}: {exc}"


_UNSEEN = object()

_SEQ = 1 << 20
"""Pins and reductions apply in the order they were stated: io pins, then node by node. Each gets a
sequence number (node position + 1) * _SEQ + its position within the node."""


@dataclass
class _Facts:
    """Atom-level facts as flat arrays: identity ranges (slot a, slot b, count), atom pairs, pins
    (atom, reason, priority, sequence) and reductions (atom, reason, sequence). Pins and reductions
    stated one at a time keep their reason, priority and sequence as numbers (`single_pins`,
    `single_reductions`) until they are solved: a few array operations for all of them."""

    ident: list[np.ndarray] = field(default_factory=list)
    edges: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    pins: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)
    reductions: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)
    single_pins: list[tuple[np.ndarray, int, int, int]] = field(default_factory=list)
    single_reductions: list[tuple[np.ndarray, int, int]] = field(default_factory=list)

    def pin(self, atoms: np.ndarray, rid: int, prio: int, seq: int) -> None:
        """One pin of a few atoms."""
        self.single_pins.append((atoms, rid, prio, seq))

    def reduce(self, atoms: np.ndarray, rid: int, seq: int) -> None:
        """One reduction of a few atoms."""
        self.single_reductions.append((atoms, rid, seq))

    def merged(self, *more: _Facts) -> _Facts:
        """These facts and `more`, together."""
        out = _Facts(list(self.ident), list(self.edges), list(self.pins), list(self.reductions),
                     list(self.single_pins), list(self.single_reductions))
        for f in more:
            out.ident += f.ident
            out.edges += f.edges
            out.pins += f.pins
            out.reductions += f.reductions
            out.single_pins += f.single_pins
            out.single_reductions += f.single_reductions
        return out

    def all_pins(self) -> list[tuple[np.ndarray, ...]]:
        """Every pin as arrays (atom, reason, priority, sequence); each pin has its own (priority,
        sequence), so the order of the parts does not matter once they are sorted by them."""
        return self.pins + _expanded(self.single_pins)

    def all_reductions(self) -> list[tuple[np.ndarray, ...]]:
        """Every reduction as arrays (atom, reason, sequence)."""
        return self.reductions + _expanded(self.single_reductions)


def _expanded(singles: list[tuple[Any, ...]]) -> list[tuple[np.ndarray, ...]]:
    """Single facts (atoms, then numbers) as one set of arrays, each number repeated per atom."""
    if not singles:
        return []
    atoms = [s[0] for s in singles]
    counts = np.fromiter(map(len, atoms), np.int64, len(atoms))
    numbers = np.array([s[1:] for s in singles], dtype=np.int64)
    return [(np.concatenate(atoms), *(np.repeat(numbers[:, k], counts) for k in range(numbers.shape[1])))]


@dataclass
class _Evaluated:
    """Every node's answer: nodes sharing an answer (and without alternatives) as one batch."""

    batches: list[tuple[_Relative, list[int], np.ndarray]]
    """(answer, node positions, the nodes' slot lists as one nodes x slots array)."""
    special: dict[int, _NodeFacts]
    """Nodes with alternatives or a declined rule, by position."""
    ops: list[OpNode]
    entries: dict[str, RuleEntry]


def _evaluate(graph: Graph, registry: RuleRegistry, table: AtomTable, reasons: _Reasons,
              pinned: list[Pinned], strict: bool) -> _Evaluated:
    derived = {v.name for v in graph.state_values()}  # grown op by op, as in _param_derived
    ops = list(graph.ops())
    batches: dict[int, tuple[_Relative, list[int], list[list[int]]]] = {}
    special: dict[int, _NodeFacts] = {}
    entries: dict[str, RuleEntry] = {}
    missing: list[OpNode] = []
    answers: dict[tuple, tuple[_Relative, list[tuple[list[_Relative], tuple[str, ...]]]] | str] = {}
    slot0, rank = table.value_slot0, table.value_rank
    own_rule: dict[int, bool] = {}  # rule entry -> whether it is a built-in rule
    entry_of: dict[str, RuleEntry | None] = {}
    for i, node in enumerate(ops):
        ins, outs = graph.inputs(node), graph.outputs(node)
        _note_derived(node, ins, outs, derived, registry)
        slots: list[int] = []
        for _, v in ins:
            first = slot0[v.name]
            slots += range(first, first + rank[v.name])
        for v in outs:
            first = slot0[v.name]
            slots += range(first, first + rank[v.name])
        entry = entry_of.get(node.op, _UNSEEN)
        if entry is _UNSEEN:
            entry = entry_of[node.op] = registry.get(node.op)
        if entry is None:
            declined: str | None = f"no op rule for '{node.op}'"
            missing.append(node)
        else:
            entries[node.name] = entry
            # built-in rules see only the node itself: one answer per distinct signature
            built_in = own_rule.get(id(entry))
            if built_in is None:
                built_in = own_rule[id(entry)] = entry.rule.__module__.startswith("prunec.rules.")
            sig = _signature(node, ins, outs, derived) if built_in else None
            try:
                answer = answers.get(sig) if sig is not None else None
            except TypeError:  # an unhashable attribute: answered on its own
                sig = answer = None
            if answer is None:
                answer = _answer(entry, graph, node, derived, table, slots)
                if sig is not None:
                    answers[sig] = answer
            if isinstance(answer, str):
                declined = answer
            else:
                declined = None
                static, choices = answer
                if not choices:
                    batch = batches.get(id(static))
                    if batch is None:
                        batch = batches[id(static)] = (static, [], [])
                    batch[1].append(i)
                    batch[2].append(slots)
                    continue
                special[i] = _NodeFacts(
                    i, node, slots, _materialize(static, slots, table, reasons, node),
                    [([_materialize(o, slots, table, reasons, node) for o in opts], labels)
                     for opts, labels in choices],
                    static, [opts for opts, _ in choices])
        if declined is not None:
            special[i] = _NodeFacts(i, node, slots, _Compiled(), [], declined=declined)
            pinned.append(Pinned(node.name, node.op, declined, node.origin))
    if strict and pinned:
        lines = "; ".join(str(p) for p in pinned[:10])
        more = f" (and {len(pinned) - 10} more)" if len(pinned) > 10 else ""
        first = missing[0].op if missing else pinned[0].op
        raise UnsupportedOpError(
            f"{len(pinned)} node(s) cannot be analysed: {lines}{more}. Register a rule with "
            f"@prunec.op_rule({first!r}), or pass strict=False to leave their channels unpruned.")
    arrays = [(rel, positions, np.asarray(lists, dtype=np.int64).reshape(len(positions), len(lists[0])))
              for rel, positions, lists in batches.values()]
    return _Evaluated(arrays, special, ops, entries)


LONE_NODES_ONE_AT_A_TIME = True
"""A batch of one node states its facts one at a time, as a node with alternatives does (fewer array
operations than the batch path; the same facts)."""


def _batch_facts(ev: _Evaluated, table: AtomTable, reasons: _Reasons) -> _Facts:
    """The facts of every batched node (those without alternatives), in a few array operations per
    distinct answer."""
    out = _Facts()
    lone: list[_Facts] = []
    start, size = table.slot_start, table.slot_size
    for rel, positions, slots in ev.batches:
        k = len(positions)
        if k == 1 and LONE_NODES_ONE_AT_A_TIME:  # an answer no other node shares (CNNs' layers all differ)
            i, node_slots = positions[0], slots[0].tolist()
            node = ev.ops[i]
            static = _materialize(rel, node_slots, table, reasons, node)
            lone.append(_special_facts(_NodeFacts(i, node, node_slots, static, []), {}, table, reasons))
            continue
        seq0 = (np.asarray(positions, dtype=np.int64) + 1) * _SEQ
        la, lb, count = rel.identity_columns()
        if len(la):  # (slot a, slot b, count) triples of every node, node by node
            triples = np.empty((k, len(la), 3), dtype=np.int64)
            triples[:, :, 0], triples[:, :, 1], triples[:, :, 2] = slots[:, la], slots[:, lb], count
            out.ident.append(triples.ravel())
        for la, lb, _, ia, ib in rel.edges:
            if ia is not None:
                out.edges.append(((start[slots[:, la]][:, None] + ia).ravel(),
                                  (start[slots[:, lb]][:, None] + ib).ravel()))
        names = [ev.ops[i].name for i in positions] if rel.pins or rel.reductions else []
        j = 0
        for la, idx, reason in rel.pins:
            atoms = _slot_atoms(slots[:, la], idx, start, size)
            rids = np.asarray([reasons.at(reason, name) for name in names], dtype=np.int64)
            out.pins.append(_rows(atoms, rids, RULE, seq0 + j))
            j += 1
        for la, reason in rel.reductions:
            atoms = _slot_atoms(slots[:, la], None, start, size)
            rids = np.asarray([reasons.at(reason, name) for name in names], dtype=np.int64)
            atoms_, rids_, _, seq_ = _rows(atoms, rids, 0, seq0 + j)
            out.reductions.append((atoms_, rids_, seq_))
            j += 1
        # axes no fact mentions pass nothing: pinned (the same positions in every node of the batch)
        unmentioned = rel.unmentioned_positions(slots[0].tolist())
        if unmentioned:  # one pin per (node, position), all in one set of arrays, node by node
            pinned_slots = slots[:, unmentioned].ravel()
            rids = np.asarray([reasons.auto(op, table.slot_value[sid], table.slot_axis[sid])
                               for op, sid in zip(
                                   [ev.ops[i].op for i in positions for _ in unmentioned],
                                   pinned_slots.tolist())], dtype=np.int64)
            seqs = (seq0[:, None] + j + np.arange(len(unmentioned), dtype=np.int64)).ravel()
            atoms, _ = table.atoms_of_slots(pinned_slots)
            sizes = size[pinned_slots]
            out.pins.append((atoms, np.repeat(rids, sizes), np.full(len(atoms), AUTO, np.int64),
                             np.repeat(seqs, sizes)))
    return out.merged(*lone)


def _rows(atoms: np.ndarray, rids: np.ndarray, prio: int, seq: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pin arrays (atom, reason, priority, sequence) of one pin per node of a batch (a row of atoms each)."""
    width = atoms.shape[1]
    return atoms.ravel(), np.repeat(rids, width), np.full(atoms.size, prio, np.int64), np.repeat(seq, width)


def _slot_atoms(slots: np.ndarray, idx: np.ndarray | None, start: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Atoms of one slot position in every node of a batch, one row per node (the slots of a
    batch have equal sizes)."""
    offsets = np.arange(int(size[slots[0]]), dtype=np.int64) if idx is None else idx
    return start[slots][:, None] + offsets[None, :]


def _special_facts(nf: _NodeFacts, choice: dict[tuple[int, int], int] | None, table: AtomTable,
                   reasons: _Reasons) -> _Facts:
    """The facts of one node with alternatives (or a declined rule) in one configuration. With
    `choice=None` (the neutral configuration) no alternative applies and no slot an alternative
    mentions is auto-pinned."""
    if choice is None:
        parts = [nf.static]
        mentioned = {sid for opts, _ in nf.choices for o in opts for sid in o.mentioned}
    else:
        parts = [nf.static] + [opts[choice[(nf.index, c)]] for c, (opts, _) in enumerate(nf.choices)]
        mentioned = set()
    out = _Facts()
    seq = (nf.index + 1) * _SEQ
    for p in parts:
        if p.ident:
            out.ident.append(np.asarray(p.ident, dtype=np.int64))
        out.edges += p.edges
        for atoms, rid, prio in p.pins:
            out.pin(atoms, rid, prio, seq)
            seq += 1
        for atoms, rid in p.reductions:
            out.reduce(atoms, rid, seq)
            seq += 1
        mentioned |= p.mentioned
    for sid in nf.slots:  # an op nobody described passes nothing
        if sid in mentioned:
            continue
        if nf.declined is not None:
            rid, prio = reasons.at(nf.declined, nf.node.name), DECLINED
        else:
            rid, prio = reasons.auto(nf.node.op, table.slot_value[sid], table.slot_axis[sid]), AUTO
        out.pin(table.atoms(sid), rid, prio, seq)
        seq += 1
    return out


def analyse_couplings(graph: Graph, registry: RuleRegistry, *, strict: bool = False,
                      extra_pins: Iterable[tuple[np.ndarray, str]] = (),
                      avoid: np.ndarray | None = None, table: AtomTable | None = None) -> CouplingResult:
    """Run the rules over `graph` and solve for components of atoms.

    `avoid`: atoms whose channels an alternative should not carry when another option can (e.g. the
    head-dim axes of attention when whole heads are wanted); such options are treated as pinned
    while choosing, but stay prunable if every option ends up avoided.
    """
    table = table if table is not None else AtomTable(graph)
    reasons = _Reasons()
    pinned: list[Pinned] = []
    ev = _evaluate(graph, registry, table, reasons, pinned, strict)

    base = _Facts()
    io: list[tuple[np.ndarray, int]] = []
    for name in graph.graph_inputs:
        io += [(table.atoms(s), reasons.id("model input")) for s in table.slots_of(graph.value(name))]
    for name in dict.fromkeys(graph.graph_outputs):
        io += [(table.atoms(s), reasons.id("model output")) for s in table.slots_of(graph.value(name))]
    for v in graph.values():
        if v.kind == ValueKind.CONSTANT:
            io += [(table.atoms(s), reasons.id(f"constant tensor '{v.name}' (not in state_dict)"))
                   for s in table.slots_of(v)]
    io += [(atoms, reasons.id(text)) for atoms, text in extra_pins]
    for seq, (atoms, rid) in enumerate(io):
        base.pin(atoms, rid, IO, seq)
    base = base.merged(_batch_facts(ev, table, reasons))
    special = ev.special
    declined = [nf for nf in special.values() if not nf.choices]
    fixed = base.merged(*(_special_facts(nf, {}, table, reasons) for nf in declined))

    avoid_atoms = avoid if avoid is not None else np.zeros(0, dtype=np.int64)
    state_atoms, _ = table.atoms_of_slots(table.state_slots)
    keys = [(i, c) for i, nf in special.items() for c in range(len(nf.choices))]
    with_choices = [nf for nf in special.values() if nf.choices]

    def solve(choice: dict[tuple[int, int], int] | None) -> tuple:
        facts = fixed.merged(*(_special_facts(nf, choice, table, reasons) for nf in with_choices))
        return _solve(facts, table)

    choice = {k: 0 for k in keys}
    iterations = 1
    if keys:
        # the neutral solve applies no alternative: an option blocked there is blocked everywhere
        neutral = solve(None)
        contracted = _contract(special, keys, neutral[0], table)
        pinned0 = neutral[2]
        avoided0 = np.zeros(neutral[1], dtype=bool)
        avoided0[neutral[0][avoid_atoms]] = True
        state0 = np.zeros(neutral[1], dtype=bool)
        state0[neutral[0][state_atoms]] = True
        start = [first_open(c, pinned0 | avoided0) for c in contracted]
        choice = dict(zip(keys, start))
        sol = solve(choice)
        closed = _closed(sol, avoid_atoms, state_atoms)
        stuck = [j for j, (i, c) in enumerate(keys)
                 if _open_channels(special[i].choices[c][0][choice[(i, c)]], sol[0], closed, table) < 2]
        if stuck:
            config, moves = choose(contracted, start, stuck, pinned0, avoided0, state0)
            iterations += moves
            if moves:
                choice = dict(zip(keys, config))
                sol = solve(choice)
    else:
        sol = solve(choice)
    labels, ncomp, comp_pinned, comp_reason, comp_reduced, comp_red_reason, comp_pin_atom = sol
    chosen = {(special[i].node.name, c): special[i].choices[c][1][o] for (i, c), o in choice.items()}
    node_couplings = _NodeCouplings(table)
    reducing: set[str] = set()
    for rel, positions, slots in ev.batches:
        node_couplings.add([ev.ops[i].name for i in positions], slots, (rel,))
        if rel.reductions:
            reducing.update(ev.ops[i].name for i in positions)
    for i, nf in special.items():
        slots = np.asarray([nf.slots], dtype=np.int64).reshape(1, len(nf.slots))
        if nf.static_relative is None:  # declined: it stated nothing
            node_couplings.add([nf.node.name], slots, ())
            continue
        options = [opts[choice[(i, c)]] for c, opts in enumerate(nf.option_relatives)]
        chosen_rel = [nf.static_relative, *options]
        node_couplings.add([nf.node.name], slots, tuple(chosen_rel))
        if any(r.reductions for r in chosen_rel):
            reducing.add(nf.node.name)
    return CouplingResult(table, labels, ncomp, comp_pinned, comp_reason, comp_reduced, comp_red_reason,
                          reasons, pinned, chosen, iterations, node_couplings, reducing, ev.entries,
                          comp_pin_atom)


class _NodeCouplings(Mapping[str, list[Coupling]]):
    """Node name -> the couplings its rule stated (in the chosen alternatives), made on first read.
    Nodes sharing an answer are kept as one batch: the answer and a (nodes x slots) array."""

    def __init__(self, table: AtomTable) -> None:
        self.table = table
        self._where: dict[str, int] = {}
        """Node name -> batch << 32 | row."""
        self._batches: list[tuple[np.ndarray, tuple[_Relative, ...]]] = []
        self._made: dict[str, list[Coupling]] = {}

    def add(self, names: list[str], slots: np.ndarray, rels: tuple[_Relative, ...]) -> None:
        """Nodes `names` (row i of `slots` is the slot list of names[i]) stated the couplings of `rels`."""
        batch = len(self._batches) << 32
        self._batches.append((slots, rels))
        self._where.update(zip(names, range(batch, batch + len(names))))

    def __getitem__(self, name: str) -> list[Coupling]:
        made = self._made.get(name)
        if made is None:
            where = self._where[name]
            slots_of_batch, rels = self._batches[where >> 32]
            slots = slots_of_batch[where & 0xFFFFFFFF].tolist()
            value, axis = self.table.slot_value, self.table.slot_axis
            made = self._made[name] = [
                Coupling(Slot(value[slots[la]], axis[slots[la]]), Slot(value[slots[lb]], axis[slots[lb]]), m)
                for rel in rels for la, lb, m in rel.couplings]
        return made

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


def _solve(facts: _Facts, table: AtomTable
           ) -> tuple[np.ndarray, int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Components of atoms under `facts`, and what pins and reductions say of each."""
    ident = np.concatenate(facts.ident).reshape(-1, 3) if facts.ident else np.zeros((0, 3), np.int64)
    a = np.concatenate([x for x, _ in facts.edges]) if facts.edges else np.zeros(0, dtype=np.int64)
    b = np.concatenate([y for _, y in facts.edges]) if facts.edges else np.zeros(0, dtype=np.int64)
    ncomp, labels = atom_components(table.slot_start, table.slot_size, table.total, ident, a, b)

    comp_pinned = np.zeros(ncomp, dtype=bool)
    comp_reason = np.full(ncomp, -1, dtype=np.int64)
    comp_pin_atom = np.full(ncomp, -1, dtype=np.int64)
    pins = facts.all_pins()
    if pins:
        atoms, rid, prio, seq = (np.concatenate(x) for x in zip(*pins))
        # by priority, then in stated order: a later pin's reason wins (a stable sort keeps the
        # order of atoms within a pin)
        order = np.lexsort((seq, prio))
        atoms, rid = atoms[order], rid[order]
        comps = labels[atoms]
        comp_pinned[comps] = True
        comp_reason[comps] = rid
        comp_pin_atom[comps] = atoms
    comp_reduced = np.zeros(ncomp, dtype=bool)
    comp_red_reason = np.full(ncomp, -1, dtype=np.int64)
    reductions = facts.all_reductions()
    if reductions:
        atoms, rid, seq = (np.concatenate(x) for x in zip(*reductions))
        order = np.argsort(seq, kind="stable")
        comps = labels[atoms[order]]
        comp_reduced[comps] = True
        comp_red_reason[comps] = rid[order]
    return labels, ncomp, comp_pinned, comp_reason, comp_reduced, comp_red_reason, comp_pin_atom


def _open_channels(option: _Compiled, labels: np.ndarray, closed: np.ndarray, table: AtomTable) -> int:
    """How many distinct open components the option's channels end in (in a solution where it is
    applied): 0 when it is blocked, 1 when it collapsed every channel into one (or has only one)."""
    comps = [labels[a] for a, _ in option.edge_arrays(table) if len(a)]
    if not comps:
        return 2  # carries nothing: nothing to improve
    c = np.concatenate(comps)
    return len(np.unique(c[~closed[c]]))


def _closed(sol: tuple, avoid: np.ndarray, state: np.ndarray) -> np.ndarray:
    """Components an option should not end in: pinned, avoided, or holding no parameter (nothing
    there could be pruned)."""
    labels, comp_pinned = sol[0], sol[2]
    closed = comp_pinned.copy()
    if len(avoid):
        closed[labels[avoid]] = True
    useful = np.zeros(len(closed), dtype=bool)
    useful[labels[state]] = True
    return closed | ~useful


def _contract(nodes: Mapping[int, _NodeFacts], keys: list[tuple[int, int]], labels: np.ndarray,
              table: AtomTable) -> list[Choice]:
    """Each choice's options as pairs and pins of components of the neutral solve."""
    out: list[Choice] = []
    n = int(labels.max()) + 1 if len(labels) else 1
    for i, c in keys:
        nf = nodes[i]
        reach = [set().union(*(o.mentioned for o in opts)) for opts, _ in nf.choices]
        others = set().union(*(r for k, r in enumerate(reach) if k != c)) | nf.static.mentioned
        options = []
        for opt in nf.choices[c][0]:
            edges = opt.edge_arrays(table)
            if edges:
                code = np.concatenate([labels[a] * n + labels[b] for a, b in edges])
                code = np.unique(code)
                pairs = np.stack([code // n, code % n], axis=1)
            else:
                pairs = np.zeros((0, 2), dtype=np.int64)
            unpassed = reach[c] - opt.mentioned - others
            atoms = [table.atoms(sid) for sid in unpassed]
            pins = np.unique(labels[np.concatenate(atoms)]) if atoms else np.zeros(0, np.int64)
            options.append(Option(pairs, pins))
        out.append(Choice((i, c), tuple(options), kind=(nf.node.op, nf.choices[c][1])))
    return out
