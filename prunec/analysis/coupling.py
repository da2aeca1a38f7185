"""Coupling analysis: run every op's rule, union the coupled atoms, propagate pins.

The result is a labelling of atoms into components. A component is one zero-invariant unit of
channels (a ZIG, in OTO's terms): every atom in it is kept or removed together. A component is
pinned if any atom in it is pinned, and 'reduced' if any op mixes its atoms (removal then differs
from zeroing, and verification uses the removal reference at that op).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from prunec.analysis.atoms import AtomTable
from prunec.analysis.choices import Choice, Option, choose, first_open
from prunec.errors import UnsupportedOpError
from prunec.ir.graph import Graph, OpNode, Value, ValueKind
from prunec.ir.slots import ChannelMap, Coupling, Identity, Slot
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
    """Facts of one rule answer (or one alternative), as atoms and slot ids. Fields a node does not
    use stay shared empty tuples: analysing a large graph makes millions of these objects, and the
    cycle collector walks every container among them."""

    edges: list[tuple[np.ndarray, np.ndarray]] | tuple = ()
    """Atom pairs of couplings with an index map."""
    ident: list[int] | tuple = ()
    """Identity couplings, flat: slot a, slot b, count, slot a, ... (atom ranges expanded in bulk
    by _solve)."""
    pins: list[tuple[np.ndarray, int, int]] | tuple = ()  # atoms, reason id, priority
    reductions: list[tuple[np.ndarray, int]] | tuple = ()
    mentioned: set[int] | frozenset = frozenset()
    local_couplings: list[object] | tuple = ()
    """Flat (slot a, slot b, map) of every coupling the answer stated (Couplings made on demand)."""

    def couplings(self, table: AtomTable) -> list[Coupling]:
        """The couplings this answer stated, between named slots."""
        value, axis, flat = table.slot_value, table.slot_axis, self.local_couplings
        return [Coupling(Slot(value[a], axis[a]), Slot(value[b], axis[b]), m)  # type: ignore[index,arg-type]
                for a, b, m in zip(flat[0::3], flat[1::3], flat[2::3])]

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


@dataclass
class _NodeFacts:
    node: OpNode
    slots: list[int]
    static: _Compiled
    choices: list[tuple[list[_Compiled], tuple[str, ...]]]
    declined: str | None = None
    entry: RuleEntry | None = None
    auto_pins: list[tuple[np.ndarray, int, int]] | None = None
    """For a node without alternatives: the pins of the axes its answer does not mention."""


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
    reasons: list[str]
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


class _Reasons:
    def __init__(self) -> None:
        self.items: list[str] = []
        self._ids: dict[str, int] = {}

    def id(self, text: str) -> int:
        if text not in self._ids:
            self._ids[text] = len(self.items)
            self.items.append(text)
        return self._ids[text]


def _param_derived(graph: Graph, registry: RuleRegistry) -> set[str]:
    derived = {v.name for v in graph.values() if v.is_state}
    for op in graph.ops():
        ins = graph.inputs(op)
        if ins and ins[0][1].name in derived and registry.is_view_like(op.op):
            derived.update(v.name for v in graph.outputs(op))
    return derived


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

    def own(slot: object) -> int:
        sid = table.slot_id(slot)  # type: ignore[arg-type]
        if sid not in local:
            raise _RuleBug(f"the rule mentions {slot}, which is not an input or output of '{node.name}'")
        return local[sid]

    for f in facts:
        if isinstance(f, Coupling):
            la, lb = own(f.a), own(f.b)
            na, nb = int(table.slot_size[table.slot_id(f.a)]), int(table.slot_size[table.slot_id(f.b)])
            if type(f.map) is Identity:  # the common case: two aligned ranges
                out.edges.append((la, lb, min(na, nb), None, None))
            else:
                ia, ib = f.map.pairs(na, nb)
                ok = (ia >= 0) & (ia < na) & (ib >= 0) & (ib < nb)
                out.edges.append((la, lb, 0, np.asarray(ia[ok], np.int64), np.asarray(ib[ok], np.int64)))
            out.mentioned.update((la, lb))
            out.couplings.append((la, lb, f.map))
        elif isinstance(f, Pin):
            la = own(f.slot)
            idx = None if f.indices is None else np.asarray(f.indices, dtype=np.int64)
            out.pins.append((la, idx, f.reason))
            out.mentioned.add(la)
        elif isinstance(f, Reduces):
            la = own(f.slot)
            out.reductions.append((la, f.reason))
            out.mentioned.add(la)
        elif isinstance(f, Free):
            out.mentioned.add(own(f.slot))
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
        out.pins = [(table.atoms(slots[la], idx), reasons.id(f"{reason} (at '{node.name}')"), RULE)
                    for la, idx, reason in rel.pins]
    if rel.reductions:
        out.reductions = [(table.atoms(slots[la]), reasons.id(f"{reason} (at '{node.name}')"))
                          for la, reason in rel.reductions]
    out.mentioned = {slots[la] for la in rel.mentioned}
    couplings: list[object] = []
    for la, lb, m in rel.couplings:
        couplings += (slots[la], slots[lb], m)
    out.local_couplings = couplings
    return out


def _frozen(v: object) -> object:
    if isinstance(v, (list, tuple)):
        return tuple(_frozen(x) for x in v)
    return v


def _signature(node: OpNode, ins: list[tuple[str, Value]], outs: list[Value], derived: set[str]) -> tuple | None:
    """What a built-in rule can see of `node` (op, attributes, tensor sizes, which inputs are
    parameters, which tensors are the same value), or None when some attribute is unhashable."""
    names: dict[str, int] = {}
    sig = (node.op, tuple([(k, _frozen(v)) for k, v in node.attrs.items()]),
           tuple([(port, v.shape, v.name in derived, names.setdefault(v.name, len(names))) for port, v in ins]),
           tuple([(v.shape, names.setdefault(v.name, len(names))) for v in outs]))
    try:
        hash(sig)
    except TypeError:
        return None
    return sig


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


def _evaluate(graph: Graph, registry: RuleRegistry, table: AtomTable, reasons: _Reasons,
              pinned: list[Pinned], strict: bool) -> list[_NodeFacts]:
    derived = _param_derived(graph, registry)
    result: list[_NodeFacts] = []
    missing: list[OpNode] = []
    answers: dict[tuple, tuple[_Relative, list[tuple[list[_Relative], tuple[str, ...]]]] | str] = {}
    for node in graph.ops():
        ins, outs = graph.inputs(node), graph.outputs(node)
        slots = [s for _, v in ins for s in table.slots_of(v)]
        slots += [s for v in outs for s in table.slots_of(v)]
        entry = registry.get(node.op)
        nf = _NodeFacts(node, slots, _Compiled(), [], entry=entry)
        result.append(nf)
        if entry is None:
            nf.declined = f"no op rule for '{node.op}'"
            missing.append(node)
        else:
            # built-in rules see only the node itself: one answer per distinct signature
            sig = _signature(node, ins, outs, derived) if entry.rule.__module__.startswith("prunec.rules.") else None
            answer = answers.get(sig) if sig is not None else None
            if answer is None:
                answer = _answer(entry, graph, node, derived, table, slots)
                if sig is not None:
                    answers[sig] = answer
            if isinstance(answer, str):
                nf.declined = answer
            else:
                static, choices = answer
                nf.static = _materialize(static, slots, table, reasons, node)
                nf.choices = [([_materialize(o, slots, table, reasons, node) for o in opts], labels)
                              for opts, labels in choices]
        if nf.declined is not None:
            pinned.append(Pinned(node.name, node.op, nf.declined, node.origin))
    if strict:
        bad = [p for p in pinned]
        if bad:
            lines = "; ".join(str(p) for p in bad[:10])
            more = f" (and {len(bad) - 10} more)" if len(bad) > 10 else ""
            first = missing[0].op if missing else bad[0].op
            raise UnsupportedOpError(
                f"{len(bad)} node(s) cannot be analysed: {lines}{more}. Register a rule with "
                f"@prunec.op_rule({first!r}), or pass strict=False to leave their channels unpruned.")
    return result


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
    nodes = _evaluate(graph, registry, table, reasons, pinned, strict)

    io_pins: list[tuple[np.ndarray, int, int]] = []
    for name in graph.graph_inputs:
        io_pins += [(table.atoms(s), reasons.id("model input"), IO) for s in table.slots_of(graph.value(name))]
    for name in dict.fromkeys(graph.graph_outputs):
        io_pins += [(table.atoms(s), reasons.id("model output"), IO) for s in table.slots_of(graph.value(name))]
    for v in graph.values():
        if v.kind == ValueKind.CONSTANT:
            io_pins += [(table.atoms(s), reasons.id(f"constant tensor '{v.name}' (not in state_dict)"), IO)
                        for s in table.slots_of(v)]
    io_pins += [(atoms, reasons.id(text), IO) for atoms, text in extra_pins]

    avoid_atoms = avoid if avoid is not None else np.zeros(0, dtype=np.int64)
    state_atoms, _ = table.atoms_of_slots([s for v in graph.state_values() for s in table.slots_of(v)])
    keys = [(i, c) for i, nf in enumerate(nodes) for c in range(len(nf.choices))]
    choice = {k: 0 for k in keys}
    iterations = 1
    if keys:
        # the neutral solve applies no alternative: an option blocked there is blocked everywhere
        neutral = _solve(nodes, None, table, reasons, io_pins)
        contracted = _contract(nodes, keys, neutral[0], table)
        pinned0 = neutral[2]
        avoided0 = np.zeros(neutral[1], dtype=bool)
        avoided0[neutral[0][avoid_atoms]] = True
        state0 = np.zeros(neutral[1], dtype=bool)
        state0[neutral[0][state_atoms]] = True
        start = [first_open(c, pinned0 | avoided0) for c in contracted]
        choice = dict(zip(keys, start))
        sol = _solve(nodes, choice, table, reasons, io_pins)
        closed = _closed(sol, avoid_atoms, state_atoms)
        stuck = [j for j, (i, c) in enumerate(keys)
                 if _open_channels(nodes[i].choices[c][0][choice[(i, c)]], sol[0], closed, table) < 2]
        if stuck:
            config, moves = choose(contracted, start, stuck, pinned0, avoided0, state0)
            iterations += moves
            if moves:
                choice = dict(zip(keys, config))
                sol = _solve(nodes, choice, table, reasons, io_pins)
    else:
        sol = _solve(nodes, choice, table, reasons, io_pins)
    labels, ncomp, comp_pinned, comp_reason, comp_reduced, comp_red_reason, comp_pin_atom = sol
    chosen = {(nodes[i].node.name, c): nodes[i].choices[c][1][o] for (i, c), o in choice.items()}
    node_couplings = _NodeCouplings(table)
    reducing: set[str] = set()
    for (i, nf) in enumerate(nodes):
        parts = [nf.static] + [opts[choice[(i, c)]] for c, (opts, _) in enumerate(nf.choices)]
        node_couplings.parts[nf.node.name] = parts
        if any(p.reductions for p in parts):
            reducing.add(nf.node.name)
    rules_used = {nf.node.name: nf.entry for nf in nodes if nf.entry is not None}
    return CouplingResult(table, labels, ncomp, comp_pinned, comp_reason, comp_reduced, comp_red_reason,
                          reasons.items, pinned, chosen, iterations, node_couplings, reducing, rules_used,
                          comp_pin_atom)


class _NodeCouplings(Mapping[str, list[Coupling]]):
    """Node name -> the couplings its rule stated (in the chosen alternatives), made on first read."""

    def __init__(self, table: AtomTable) -> None:
        self.table = table
        self.parts: dict[str, list[_Compiled]] = {}
        self._made: dict[str, list[Coupling]] = {}

    def __getitem__(self, name: str) -> list[Coupling]:
        made = self._made.get(name)
        if made is None:
            made = self._made[name] = [c for p in self.parts[name] for c in p.couplings(self.table)]
        return made

    def __iter__(self) -> Iterator[str]:
        return iter(self.parts)

    def __len__(self) -> int:
        return len(self.parts)


def _solve(nodes: list[_NodeFacts], choice: dict[tuple[int, int], int] | None, table: AtomTable,
           reasons: _Reasons, io_pins: list[tuple[np.ndarray, int, int]]
           ) -> tuple[np.ndarray, int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Components for one configuration of the alternatives. With `choice=None` (the neutral
    configuration) no alternative is applied and no slot an alternative mentions is auto-pinned."""
    ea: list[np.ndarray] = []
    eb: list[np.ndarray] = []
    pins: list[tuple[np.ndarray, int, int]] = list(io_pins)
    reds: list[tuple[np.ndarray, int]] = []
    ident: list[int] = []
    for i, nf in enumerate(nodes):
        if not nf.choices:  # the common case: the same facts in every configuration
            p = nf.static
            if p.edges:
                ea += [a for a, _ in p.edges]
                eb += [b for _, b in p.edges]
            ident += p.ident
            pins += p.pins
            reds += p.reductions
            if nf.auto_pins is None:
                nf.auto_pins = _unmentioned_pins(nf, p.mentioned, table, reasons)
            pins += nf.auto_pins
            continue
        if choice is None:
            parts = [nf.static]
        else:
            parts = [nf.static] + [opts[choice[(i, c)]] for c, (opts, _) in enumerate(nf.choices)]
        mentioned: set[int] = set()
        if choice is None:
            mentioned = {sid for opts, _ in nf.choices for o in opts for sid in o.mentioned}
        for p in parts:
            for a, b in p.edges:
                ea.append(a)
                eb.append(b)
            ident += p.ident
            pins += p.pins
            reds += p.reductions
            mentioned |= p.mentioned
        pins += _unmentioned_pins(nf, mentioned, table, reasons)
    n = table.total
    if ident:  # aligned ranges: atom a0+k ~ b0+k for k < count, expanded in one go
        sa, sb, count = np.asarray(ident, dtype=np.int64).reshape(-1, 3).T
        offset = np.arange(int(count.sum()), dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
        ea.append(np.repeat(table.slot_start[sa], count) + offset)
        eb.append(np.repeat(table.slot_start[sb], count) + offset)
    a = np.concatenate(ea) if ea else np.zeros(0, dtype=np.int64)
    b = np.concatenate(eb) if eb else np.zeros(0, dtype=np.int64)
    graph_m = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    ncomp, labels = connected_components(graph_m, directed=False)
    labels = labels.astype(np.int64)

    comp_pinned = np.zeros(ncomp, dtype=bool)
    comp_reason = np.full(ncomp, -1, dtype=np.int64)
    comp_pin_atom = np.full(ncomp, -1, dtype=np.int64)
    for atoms, rid, _ in sorted(pins, key=lambda p: p[2]):
        if len(atoms):
            comps = labels[atoms]
            comp_pinned[comps] = True
            comp_reason[comps] = rid
            comp_pin_atom[comps] = atoms
    comp_reduced = np.zeros(ncomp, dtype=bool)
    comp_red_reason = np.full(ncomp, -1, dtype=np.int64)
    for atoms, rid in reds:
        if len(atoms):
            comps = labels[atoms]
            comp_reduced[comps] = True
            comp_red_reason[comps] = rid
    return labels, ncomp, comp_pinned, comp_reason, comp_reduced, comp_red_reason, comp_pin_atom


def _unmentioned_pins(nf: _NodeFacts, mentioned: set[int] | frozenset, table: AtomTable,
                      reasons: _Reasons) -> list[tuple[np.ndarray, int, int]]:
    """Pins of the node's axes that no fact mentions: an op nobody described passes nothing."""
    out = []
    for sid in nf.slots:
        if sid in mentioned:
            continue
        if nf.declined is not None:
            rid, prio = reasons.id(f"{nf.declined} (at '{nf.node.name}')"), DECLINED
        else:
            rid, prio = reasons.id(f"'{nf.node.op}' does not pass channels along axis "
                                   f"{table.slot_axis[sid]} of '{table.slot_value[sid]}'"), AUTO
        out.append((table.atoms(sid), rid, prio))
    return out


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


def _contract(nodes: list[_NodeFacts], keys: list[tuple[int, int]], labels: np.ndarray,
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
