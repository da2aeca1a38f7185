"""Pictures of an analysis: which group's channels flow along which edge (for small models).

- `to_dot(analysis)`: Graphviz dot text (render with `dot -Tsvg`). Ops are boxes, pinned ops red
  with their reason; parameters are notes listing the group of each axis; every activation edge is
  coloured by the group whose channels it carries and labelled with its shape.
- `draw(analysis, path)`: the same picture with matplotlib (layered layout, no Graphviz needed).

Colours come from a fixed palette indexed by group id, so pictures are stable across runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from prunec.errors import PruneError
from prunec.ir.graph import Value

if TYPE_CHECKING:
    from prunec.analysis.result import Analysis

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5", "#c49c94", "#f7b6d2", "#9edae5", "#dbdb8d")
UNGROUPED = "#999999"
PINNED_FILL = "#f4cccc"
MAX_DRAWN_OPS = 300


def group_color(group_id: int | None) -> str:
    """The colour of a group (grey for channels in no group)."""
    return UNGROUPED if group_id is None else PALETTE[group_id % len(PALETTE)]


def axis_groups(analysis: Analysis, value: Value, group_of: np.ndarray | None = None) -> list[int | None]:
    """Per axis of `value`: the id of the group its channels belong to, or None.

    `group_of` is `analysis.component_groups()`, passed in when drawing many values.
    """
    cr = analysis.coupling
    group_of = analysis.component_groups() if group_of is None else group_of
    out: list[int | None] = []
    for sid in cr.atoms.slots_of(value):
        ids = group_of[cr.labels[cr.atoms.atoms(sid)]]
        ids = ids[ids >= 0]
        out.append(int(ids[0]) if len(ids) else None)
    return out


def channel_group(analysis: Analysis, value: Value, group_of: np.ndarray | None = None) -> int | None:
    """The group carried by `value`: that of its first axis that belongs to a group."""
    return next((g for g in axis_groups(analysis, value, group_of) if g is not None), None)


def _q(text: str) -> str:
    """A dot string literal; newlines become dot's line breaks."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _check_size(analysis: Analysis, limit: int) -> None:
    n = len(analysis.graph)
    if n > limit:
        raise PruneError(f"the graph has {n} ops; pictures are for small models (at most {limit}). Pass a "
                         "larger max_ops=, or use analysis.explain(name) / print(analysis) instead.")


def to_dot(analysis: Analysis, *, max_ops: int = MAX_DRAWN_OPS) -> str:
    """Graphviz dot text of the analysed graph with groups as edge colours (see module doc)."""
    _check_size(analysis, max_ops)
    graph = analysis.graph
    pinned = {p.node: p.reason for p in analysis.pinned}
    group_of = analysis.component_groups()
    lines = ["digraph prunec {", "  rankdir=TB;", '  node [fontname="Helvetica", fontsize=10];',
             '  edge [fontname="Helvetica", fontsize=8];']
    for v in graph.values():
        if v.name in graph.graph_inputs:
            lines.append(f"  {_q('v:' + v.name)} [shape=oval, label={_q(f'{v.name} {list(v.shape)}')}];")
        elif v.is_state and graph.consumers(v):
            per_axis = enumerate(axis_groups(analysis, v, group_of))
            axes = " ".join(f"{k}:g{g}" for k, g in per_axis if g is not None)
            label = f"{v.param} {list(v.shape)}" + (f"\n{axes}" if axes else "")
            color = group_color(channel_group(analysis, v, group_of))
            lines.append(f"  {_q('v:' + v.name)} [shape=note, style=filled, fillcolor={_q(color)}, "
                         f"fontcolor=white, label={_q(label)}];")
    for op in graph.ops():
        label = f"{op.name}\n{op.op}"
        style = ""
        if op.name in pinned:
            label += f"\npinned: {pinned[op.name]}"
            style = f", style=filled, fillcolor={_q(PINNED_FILL)}"
        lines.append(f"  {_q('op:' + op.name)} [shape=box{style}, label={_q(label)}];")
    for op in graph.ops():
        for port, v in graph.inputs(op):
            producer = graph.producer(v)
            src = "op:" + producer.name if producer is not None else "v:" + v.name
            if producer is None and not (v.name in graph.graph_inputs or v.is_state):
                continue  # constants: not drawn
            group = channel_group(analysis, v, group_of)
            tag = f" g{group}" if group is not None else ""
            label = f"{port}: {list(v.shape)}{tag}" if producer is not None else port
            lines.append(f"  {_q(src)} -> {_q('op:' + op.name)} [color={_q(group_color(group))}, "
                         f"label={_q(label)}];")
    for name in dict.fromkeys(graph.graph_outputs):
        producer = graph.producer(name)
        if producer is None:
            continue
        v = graph.value(name)
        lines.append(f"  {_q('out:' + name)} [shape=oval, label={_q(f'output {name} {list(v.shape)}')}];")
        lines.append(f"  {_q('op:' + producer.name)} -> {_q('out:' + name)};")
    if analysis.groups:
        lines.append("  subgraph cluster_legend {")
        lines.append('    label="groups"; fontname="Helvetica"; fontsize=10;')
        for g in analysis.groups:
            label = _q(f"g{g.id} {g.name}: {g.channel_count} ch")
            fill = _q(group_color(g.id))
            node = _q(f"g:{g.id}")
            lines.append(f"    {node} [shape=box, style=filled, fillcolor={fill}, fontcolor=white, "
                         f"label={label}];")
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _layers(analysis: Analysis) -> dict[str, tuple[int, int]]:
    """Op name -> (depth, position in its layer): depth is the longest path from any input."""
    graph = analysis.graph
    depth: dict[str, int] = {}
    for op in graph.ops():
        parents = [graph.producer(v) for _, v in graph.inputs(op)]
        depth[op.name] = 1 + max((depth[p.name] for p in parents if p is not None), default=-1)
    seen: dict[int, int] = {}
    out: dict[str, tuple[int, int]] = {}
    for op in graph.ops():
        d = depth[op.name]
        out[op.name] = (d, seen.get(d, 0))
        seen[d] = seen.get(d, 0) + 1
    return out


def draw(analysis: Analysis, path: str | None = None, *, max_ops: int = MAX_DRAWN_OPS) -> Any:
    """Draw the analysed graph with matplotlib; save to `path` if given; return the Figure.

    Ops are boxes in layers (top to bottom), filled with the colour of the group their output
    channels belong to (red outline: pinned); edges take the colour of the group they carry.
    """
    _check_size(analysis, max_ops)
    from matplotlib.figure import Figure  # no pyplot: drawing changes no global backend state
    from matplotlib.patches import FancyBboxPatch, Patch

    graph = analysis.graph
    group_of = analysis.component_groups()
    pos = _layers(analysis)
    pinned = {p.node for p in analysis.pinned}
    depth = max((d for d, _ in pos.values()), default=0) + 1
    width = max((i for _, i in pos.values()), default=0) + 1
    fig = Figure(figsize=(max(6.0, 2.4 * width), max(4.0, 0.9 * depth)))
    ax = fig.subplots()
    xy = {name: (i * 2.4, -d * 0.9) for name, (d, i) in pos.items()}
    for op in graph.ops():
        x1, y1 = xy[op.name]
        for _, v in graph.inputs(op):
            producer = graph.producer(v)
            if producer is None:
                continue
            x0, y0 = xy[producer.name]
            bend = 0.35 if y0 - y1 > 1.0 else 0.0  # skip connections curve around the boxes between
            color = group_color(channel_group(analysis, v, group_of))
            ax.annotate("", xy=(x1, y1 + 0.22), xytext=(x0, y0 - 0.22),
                        arrowprops={"arrowstyle": "->", "color": color,
                                    "connectionstyle": f"arc3,rad={bend}"})
    for op in graph.ops():
        x, y = xy[op.name]
        outs = graph.outputs(op)
        fill = group_color(channel_group(analysis, outs[0], group_of)) if outs else UNGROUPED
        edge = "red" if op.name in pinned else "black"
        ax.add_patch(FancyBboxPatch((x - 1.0, y - 0.22), 2.0, 0.44, boxstyle="round,pad=0.02",
                                    facecolor=fill, edgecolor=edge, linewidth=2 if op.name in pinned else 0.8,
                                    alpha=0.85))
        ax.text(x, y, f"{op.name}\n{op.op}", ha="center", va="center", fontsize=6, color="white")
    handles = [Patch(color=group_color(g.id), label=f"g{g.id} {g.name} ({g.channel_count})")
               for g in analysis.groups[:len(PALETTE)]]
    handles.append(Patch(facecolor="white", edgecolor="red", label="pinned op"))
    ax.legend(handles=handles, loc="upper right", fontsize=6)
    ax.set_xlim(-1.4, width * 2.4)
    ax.set_ylim(-depth * 0.9, 0.6)
    ax.axis("off")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
