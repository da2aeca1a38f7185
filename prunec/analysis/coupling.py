"""Coupling analysis: run every op's rule, union the coupled atoms, propagate pins.

The result is a labelling of atoms into components. A component is one zero-invariant unit of
channels (a ZIG, in OTO's terms): every atom in it is kept or removed together. A component is
pinned if any atom in it is pinned, and 'reduced' if any op mixes its atoms (removal then differs
from zeroing, and verification uses the removal reference at that op).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from prunec.analysis.atoms import AtomTable
from prunec.analysis.choices import Choice, Option, choose, first_open
from prunec.errors import UnsupportedOpError
from prunec.ir.graph import Graph, OpNode, ValueKind
from prunec.ir.slots import Coupling, Identity
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
    """Facts of one rule answer (or one alternative), as atom arrays."""

    edges: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    pins: list[tuple[np.ndarray, int, int]] = field(default_factory=list)  # atoms, reason id, priority
    reductions: list[tuple[np.ndarray, int]] = field(default_factory=list)
    mentioned: set[int] = field(default_factory=set)
    carriers: list[np.ndarray] = field(default_factory=list)
    couplings: list[Coupling] = field(default_factory=list)


@dataclass
class _NodeFacts:
    node: OpNode
    slots: list[int]
    static: _Compiled
    choices: list[tuple[list[_Compiled], tuple[str, ...]]]
    declined: str | None = None
    entry: RuleEntry | None = None


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
    node_couplings: dict[str, list[Coupling]]
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


def _compile(facts: Sequence[Fact], table: AtomTable, reasons: _Reasons, node_slots: set[int],
             node: OpNode) -> _Compiled:
    out = _Compiled()
    for f in facts:
        if isinstance(f, Coupling):
            sa, sb = table.slot_id(f.a), table.slot_id(f.b)
            _check_own(sa, node_slots, f.a, node)
            _check_own(sb, node_slots, f.b, node)
            a_atoms, b_atoms = coupling_atoms(table, f)
            out.edges.append((a_atoms, b_atoms))
            out.carriers += [a_atoms, b_atoms]
            out.mentioned.update((sa, sb))
            out.couplings.append(f)
        elif isinstance(f, Pin):
            sid = table.slot_id(f.slot)
            _check_own(sid, node_slots, f.slot, node)
            idx = None if f.indices is None else np.asarray(f.indices, dtype=np.int64)
            out.pins.append((table.atoms(sid, idx), reasons.id(f"{f.reason} (at '{node.name}')"), RULE))
            out.mentioned.add(sid)
        elif isinstance(f, Reduces):
            sid = table.slot_id(f.slot)
            _check_own(sid, node_slots, f.slot, node)
            out.reductions.append((table.atoms(sid), reasons.id(f"{f.reason} (at '{node.name}')")))
            out.mentioned.add(sid)
        elif isinstance(f, Free):
            sid = table.slot_id(f.slot)
            _check_own(sid, node_slots, f.slot, node)
            out.mentioned.add(sid)
        else:
            raise TypeError(f"rule answered {type(f).__name__}; expected couple/pin/reduces/free/alternatives")
    return out


class _RuleBug(Exception):
    pass


def _check_own(sid: int, node_slots: set[int], slot: object, node: OpNode) -> None:
    if sid not in node_slots:
        raise _RuleBug(f"the rule mentions {slot}, which is not an input or output of '{node.name}'")


def _evaluate(graph: Graph, registry: RuleRegistry, table: AtomTable, reasons: _Reasons,
              pinned: list[Pinned], strict: bool) -> list[_NodeFacts]:
    derived = _param_derived(graph, registry)
    result: list[_NodeFacts] = []
    missing: list[OpNode] = []
    for node in graph.ops():
        slots = [s for _, v in graph.inputs(node) for s in table.slots_of(v)]
        slots += [s for v in graph.outputs(node) for s in table.slots_of(v)]
        node_slots = set(slots)
        entry = registry.get(node.op)
        nf = _NodeFacts(node, slots, _Compiled(), [], entry=entry)
        result.append(nf)
        if entry is None:
            nf.declined = f"no op rule for '{node.op}'"
            missing.append(node)
        else:
            try:
                answer = entry.rule(OpView(graph, node, derived.__contains__))
                if isinstance(answer, Declined):
                    nf.declined = answer.reason
                else:
                    plain = [f for f in answer if not isinstance(f, Alternatives)]
                    nf.static = _compile(plain, table, reasons, node_slots, node)
                    for alt in (f for f in answer if isinstance(f, Alternatives)):
                        opts = [_compile(o, table, reasons, node_slots, node) for o in alt.options]
                        nf.choices.append((opts, alt.labels))
            except Exception as exc:  # noqa: BLE001 - a failing rule pins its node, never crashes prunec
                nf.static, nf.choices = _Compiled(), []
                nf.declined = f"rule from {entry.source} failed: {type(exc).__name__}: {exc}"
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
    state_atoms = np.concatenate([table.atoms(s) for v in graph.state_values() for s in table.slots_of(v)]
                                 or [np.zeros(0, dtype=np.int64)])
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
                 if _open_channels(nodes[i].choices[c][0][choice[(i, c)]], sol[0], closed) < 2]
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
    node_couplings = {}
    reducing: set[str] = set()
    for (i, nf) in enumerate(nodes):
        parts = [nf.static] + [opts[choice[(i, c)]] for c, (opts, _) in enumerate(nf.choices)]
        node_couplings[nf.node.name] = [c for p in parts for c in p.couplings]
        if any(p.reductions for p in parts):
            reducing.add(nf.node.name)
    rules_used = {nf.node.name: nf.entry for nf in nodes if nf.entry is not None}
    return CouplingResult(table, labels, ncomp, comp_pinned, comp_reason, comp_reduced, comp_red_reason,
                          reasons.items, pinned, chosen, iterations, node_couplings, reducing, rules_used,
                          comp_pin_atom)


def _solve(nodes: list[_NodeFacts], choice: dict[tuple[int, int], int] | None, table: AtomTable,
           reasons: _Reasons, io_pins: list[tuple[np.ndarray, int, int]]
           ) -> tuple[np.ndarray, int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Components for one configuration of the alternatives. With `choice=None` (the neutral
    configuration) no alternative is applied and no slot an alternative mentions is auto-pinned."""
    ea: list[np.ndarray] = []
    eb: list[np.ndarray] = []
    pins: list[tuple[np.ndarray, int, int]] = list(io_pins)
    reds: list[tuple[np.ndarray, int]] = []
    for i, nf in enumerate(nodes):
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
            pins += p.pins
            reds += p.reductions
            mentioned |= p.mentioned
        for sid in nf.slots:
            if sid in mentioned:
                continue
            if nf.declined is not None:
                rid, prio = reasons.id(f"{nf.declined} (at '{nf.node.name}')"), DECLINED
            else:
                rid, prio = reasons.id(f"'{nf.node.op}' does not pass channels along axis "
                                       f"{table.slot_axis[sid]} of '{table.slot_value[sid]}'"), AUTO
            pins.append((table.atoms(sid), rid, prio))
    n = table.total
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


def _open_channels(option: _Compiled, labels: np.ndarray, closed: np.ndarray) -> int:
    """How many distinct open components the option's channels end in (in a solution where it is
    applied): 0 when it is blocked, 1 when it collapsed every channel into one (or has only one)."""
    comps = [labels[a] for a, _ in option.edges if len(a)]
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
            if opt.edges:
                code = np.concatenate([labels[a] * n + labels[b] for a, b in opt.edges])
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
