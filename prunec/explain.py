"""Explain an analysis: which rule coupled which channels, and why something is pinned.

`explain(analysis, name)` accepts a parameter (state_dict name), an op node or a value of the IR
and answers in text a pass or rule author can act on:

- for every axis: the group it belongs to, or the pin reason plus the chain of couplings through
  which that pin reached it (node, op, rule);
- for a group's axis: every coupling that put channels into the group, with the node, its op and
  the rule (file:line) that stated it;
- for a node: its rule, inputs and outputs, its couplings and the fate of every axis it touches.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import breadth_first_order

from prunec.analysis.coupling import coupling_atoms
from prunec.analysis.result import Analysis
from prunec.errors import PruneError
from prunec.ir.graph import Value
from prunec.ir.slots import Coupling, Identity, Slot
from prunec.sources import describe_source

MAX_COUPLINGS_SHOWN = 40


@dataclass(frozen=True)
class _Edge:
    node: str
    coupling: Coupling


def _rule_text(analysis: Analysis, node: str) -> str:
    entry = analysis.coupling.rules_used.get(node)
    if entry is None:
        return "no rule"
    name = getattr(entry.rule, "__name__", type(entry.rule).__name__)
    return f"rule {name} ({describe_source(entry.source)})"


def _slot_text(analysis: Analysis, slot: Slot) -> str:
    v = analysis.graph.value(slot.value)
    return f"{v.param if v.is_state else v.name}[{slot.axis}]"


def _coupling_text(analysis: Analysis, c: Coupling) -> str:
    mapping = "" if isinstance(c.map, Identity) else f" via {c.map}"
    return f"{_slot_text(analysis, c.a)} <-> {_slot_text(analysis, c.b)}{mapping}"


def _edge_line(analysis: Analysis, e: _Edge) -> str:
    op = analysis.graph.op(e.node).op
    return f"      {e.node} [{op}] {_coupling_text(analysis, e.coupling)}  -- {_rule_text(analysis, e.node)}"


class _Index:
    """Couplings of the analysis, expanded to atoms once (for paths and group membership)."""

    def __init__(self, analysis: Analysis) -> None:
        self.analysis = analysis
        self.group_of = analysis.component_groups()
        table = analysis.coupling.atoms
        self.edges: list[_Edge] = []
        heads: list[np.ndarray] = []
        tails: list[np.ndarray] = []
        owners: list[np.ndarray] = []
        for node, couplings in analysis.coupling.node_couplings.items():
            for c in couplings:
                a_atoms, b_atoms = coupling_atoms(table, c)
                heads.append(a_atoms)
                tails.append(b_atoms)
                owners.append(np.full(len(a_atoms), len(self.edges), dtype=np.int64))
                self.edges.append(_Edge(node, c))
        self.a = np.concatenate(heads) if heads else np.zeros(0, np.int64)
        self.b = np.concatenate(tails) if tails else np.zeros(0, np.int64)
        self.owner = np.concatenate(owners) if owners else np.zeros(0, np.int64)
        n = table.total
        self.matrix = coo_matrix((np.ones(len(self.a) * 2, np.int32),
                                  (np.concatenate([self.a, self.b]), np.concatenate([self.b, self.a]))),
                                 shape=(n, n)).tocsr()

    def edges_in(self, components: np.ndarray) -> list[_Edge]:
        """Couplings with at least one atom pair inside `components`."""
        labels = self.analysis.coupling.labels
        inside = np.isin(labels[self.a], components)
        return [self.edges[i] for i in np.unique(self.owner[inside])]

    def path(self, start: int, goal: int) -> list[_Edge]:
        """Couplings along a shortest atom path from `start` to `goal` (same component)."""
        if start == goal:
            return []
        _, pred = breadth_first_order(self.matrix, start, directed=False, return_predecessors=True)
        atoms = [goal]
        while atoms[-1] != start and pred[atoms[-1]] >= 0:
            atoms.append(int(pred[atoms[-1]]))
        atoms.reverse()
        steps: list[_Edge] = []
        for x, y in itertools.pairwise(atoms):
            hit = np.flatnonzero(((self.a == x) & (self.b == y)) | ((self.a == y) & (self.b == x)))
            edge = self.edges[int(self.owner[hit[0]])]
            if not steps or steps[-1] is not edge:
                steps.append(edge)
        return steps


def _axis_lines(analysis: Analysis, index: _Index, value: Value, axis: int, detail: bool,
                label: str = "axis ") -> Iterator[str]:
    """What happened to one axis of one value: its group (and who coupled it) or its pin."""
    cr = analysis.coupling
    table = cr.atoms
    sid = table.slot_id(Slot(value.name, axis))
    atoms = table.atoms(sid)
    size = value.shape[axis]
    comps = np.unique(cr.labels[atoms])
    groups = sorted({int(g) for g in index.group_of[comps] if g >= 0})
    pinned = comps[cr.comp_pinned[comps]]
    head = f"  {label}{axis}{']' if label.endswith('[') else ''} (size {size}): "
    if not groups and len(pinned) == 0:
        yield head + "free (no parameter carries these channels)"
        return
    for gid in groups:
        g = analysis.group(gid)
        zi = "" if g.zero_invariant else ", not zero-invariant: " + "; ".join(g.notes)
        yield head + f"group {gid} '{g.name}' ({g.channel_count} channels{zi})"
        if detail:
            edges = index.edges_in(g.components)
            yield f"    coupled by {len(edges)} coupling(s):"
            for e in edges[:MAX_COUPLINGS_SHOWN]:
                yield _edge_line(analysis, e)
            if len(edges) > MAX_COUPLINGS_SHOWN:
                yield f"      ... and {len(edges) - MAX_COUPLINGS_SHOWN} more"
    if len(pinned):
        comp = int(pinned[0])
        count = int(cr.comp_pinned[cr.labels[atoms]].sum())
        which = "all" if count == size else f"{count} of {size}"
        rids = dict.fromkeys(int(r) for r in cr.comp_pin_reason[pinned])
        reasons = "; ".join(cr.reasons[r] if r >= 0 else "pinned" for r in rids)
        yield head + f"pinned ({which} channels): {reasons}"
        source = int(cr.comp_pin_atom[comp])
        if detail and source >= 0:
            first = int(atoms[cr.labels[atoms] == comp][0])
            src_slot = int(table.slot_of_atoms(np.asarray([source]))[0])
            where = _slot_text(analysis, Slot(table.slot_value[src_slot], table.slot_axis[src_slot]))
            steps = index.path(first, source)
            if steps:
                yield f"    the pin reaches it from {where} through:"
                for e in steps:
                    yield _edge_line(analysis, e)
            else:
                yield f"    the pin is on {where} itself"


def _value_of_param(analysis: Analysis, name: str) -> Value | None:
    for v in analysis.graph.state_values():
        if v.param == name or name in v.aliases:
            return v
    return None


def _explain_value(analysis: Analysis, index: _Index, v: Value, title: str) -> list[str]:
    lines = [title]
    producer = analysis.graph.producer(v)
    if producer is not None:
        lines.append(f"  produced by {producer.name} [{producer.op}]")
    users = analysis.graph.consumers(v)
    if users:
        lines.append("  read by " + ", ".join(f"{op.name} [{op.op}] as {port}" for op, port in users[:12])
                     + (" ..." if len(users) > 12 else ""))
    for axis in range(v.rank):
        lines += list(_axis_lines(analysis, index, v, axis, detail=True))
    return lines


def _explain_node(analysis: Analysis, index: _Index, name: str) -> list[str]:
    graph, cr = analysis.graph, analysis.coupling
    op = graph.op(name)
    origin = f" from module '{op.origin}'" if op.origin else ""
    lines = [f"node '{name}' [{op.op}]{origin}", f"  {_rule_text(analysis, name)}"]
    lines += [f"  pinned: {p.reason}" for p in analysis.pinned if p.node == name]
    lines += [f"  chose: {label}" for (node, _), label in sorted(cr.choices.items()) if node == name]
    lines += [f"  input {port}: {v.name} {list(v.shape)}" for port, v in graph.inputs(op)]
    lines += [f"  output {i}: {v.name} {list(v.shape)}" for i, v in enumerate(graph.outputs(op))]
    couplings = cr.node_couplings.get(name, [])
    lines.append(f"  couplings ({len(couplings)}):")
    lines += [f"    {_coupling_text(analysis, c)}" for c in couplings]
    if name in cr.reducing:
        lines.append("  mixes channels (removal differs from zeroing here)")
    lines.append("  axes:")
    tensors = [v for _, v in graph.inputs(op)] + graph.outputs(op)
    for v in dict.fromkeys(tensors):
        for axis in range(v.rank):
            lines += [f"  {line}" for line in _axis_lines(analysis, index, v, axis, False, f"{v.name}[")]
    return lines


def explain(analysis: Analysis, name: str) -> str:
    """Explain a parameter (state_dict name), an op node or a value of `analysis.graph`.

    Raises:
        PruneError: `name` is none of these (the message lists the closest names).

    """
    index = _Index(analysis)
    graph = analysis.graph
    v = _value_of_param(analysis, name)
    if v is not None:
        aliases = f", also named {', '.join(v.aliases)}" if v.aliases else ""
        title = f"parameter '{v.param}' {list(v.shape)} ({v.kind.value}, IR value '{v.name}'{aliases})"
        return "\n".join(_explain_value(analysis, index, v, title))
    if graph.has_op(name):
        return "\n".join(_explain_node(analysis, index, name))
    if any(val.name == name for val in graph.values()):
        val = graph.value(name)
        title = f"value '{name}' {list(val.shape)} ({val.kind.value})"
        return "\n".join(_explain_value(analysis, index, val, title))
    known = [str(x.param) for x in graph.state_values()] + [op.name for op in graph.ops()]
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise PruneError(f"{name!r} is not a parameter, node or value of the analysed model{hint} (parameters "
                     "go by their state_dict names, nodes and values as prunec.ir.printer.format_graph "
                     "names them)")
