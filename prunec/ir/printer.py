"""Stable text for graphs and analyses (golden tests compare it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prunec.ir.graph import Graph

if TYPE_CHECKING:
    from prunec.analysis.result import Analysis


def format_graph(graph: Graph) -> str:
    """One line per op: `outputs = op(inputs) {attrs}  # origin`."""
    lines = []
    for v in graph.values():
        if v.is_state:
            lines.append(f"%{v.name}: {v.kind.value} {v.param} {list(v.shape)}")
        elif graph.producer(v) is None:
            lines.append(f"%{v.name}: {v.kind.value} {list(v.shape)}")
    for op in graph.ops():
        outs = ", ".join(f"%{v.name}{list(v.shape)}" for v in graph.outputs(op)) or "()"
        ins = ", ".join(f"{p}=%{v.name}" for p, v in graph.inputs(op))
        where = f"  # {op.origin}" if op.origin else ""
        lines.append(f"{outs} = {op.op}({ins}){where}")
    lines.append("return " + ", ".join(f"%{n}" for n in graph.graph_outputs))
    return "\n".join(lines)


def format_analysis(analysis: Analysis) -> str:
    """Groups with their members, then pins with reasons."""
    lines = [f"{len(analysis.groups)} groups, {analysis.prunable_channels} prunable channels"]
    for g in analysis.groups:
        lines.append(str(g))
    if analysis.pinned:
        lines.append("pinned nodes:")
        lines += [f"  {p}" for p in analysis.pinned]
    if analysis.pinned_params:
        lines.append("unprunable parameter axes:")
        lines += [f"  {p.param}[{p.dim}]: {p.reason}" for p in analysis.pinned_params]
    return "\n".join(lines)
