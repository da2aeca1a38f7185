"""What the `prunec` command writes besides the model: Markdown/JSON reports and the channel chart."""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Sequence
from typing import Any

from prunec.analysis.groups import RemovedGroup
from prunec.report import PruneReport

REPORT_SUFFIXES = (".md", ".json")


def _human(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return f"{n:.0f}"


def to_json(report: PruneReport, removed: Sequence[RemovedGroup], source: str, output: str) -> str:
    """The report as JSON: summary numbers, verification, every removed slice, every changed axis."""
    data: dict[str, Any] = {"source": source, "output": output, **report.to_dict()}
    data["pinned"] = [{"node": p.node, "op": p.op, "reason": p.reason} for p in report.pinned]
    data["removed"] = [{"group": r.group_id, "name": r.name, "channels": list(r.channels),
                        "zero_invariant": r.zero_invariant,
                        "members": [{"param": s.param, "dim": s.dim, "indices": list(s.indices)} for s in r.members]}
                       for r in removed]
    return json.dumps(data, indent=2, default=str)


def to_markdown(report: PruneReport, source: str, output: str, plot: str | None) -> str:
    """A readable Markdown report: summary table, verification, per-layer table, pins and notes."""
    lines = [f"# prunec report: {report.model}", "", f"`{source}` -> `{output}`", "",
             "| | before | after | kept |", "|---|---:|---:|---:|",
             f"| parameters | {_human(report.params_before)} | {_human(report.params_after)} | {report.params_ratio:.1%} |",
             f"| MACs | {_human(report.macs_before)} | {_human(report.macs_after)} | {report.macs_ratio:.1%} |",
             "", f"Groups: {report.groups_found} found, {report.groups_pruned} pruned; channels: "
             f"{report.channels_removed} of {report.channels_total} removed.", ""]
    if report.verification is not None:
        lines += [f"Verification: {report.verification}", ""]
    if plot:
        lines += [f"![channels per layer]({os.path.basename(plot)})", ""]
    if report.layers:
        lines += ["## Layers", "", "| parameter | axis | before | after |", "|---|---:|---:|---:|"]
        lines += [f"| `{c.param}` | {c.dim} | {c.before} | {c.after} |" for c in report.layers]
        lines.append("")
    if report.pinned:
        lines += ["## Pinned nodes", ""] + [f"- `{p.node}` ({p.op}): {p.reason}" for p in report.pinned] + [""]
    if report.not_zero_invariant:
        lines += ["## Not zero-invariant (verified against the removal reference)", ""]
        lines += [f"- {t}" for t in report.not_zero_invariant] + [""]
    if report.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in report.notes] + [""]
    return "\n".join(lines)


def plot_channels(report: PruneReport, path: str, weights: Collection[str] = ()) -> None:
    """A horizontal bar chart of output channels (axis 0) per layer, before and after (PNG);
    `weights` restricts it to those parameters (the layers' weights rather than their biases).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    layers = [c for c in report.layers if c.dim == 0 and (not weights or c.param in weights)] or list(report.layers)
    height = max(2.5, 0.22 * len(layers) + 1.2)
    fig, ax = plt.subplots(figsize=(8, height))
    try:
        ys = list(range(len(layers)))[::-1]
        ax.barh(ys, [c.before for c in layers], color="#c8d3e6", label="before")
        ax.barh(ys, [c.after for c in layers], color="#2c5aa0", height=0.5, label="after")
        ax.set_yticks(ys)
        ax.set_yticklabels([c.param if len(c.param) <= 40 else "..." + c.param[-37:] for c in layers],
                           fontsize=7)
        ax.set_xlabel("channels (axis 0)")
        ax.set_title(f"{report.model}: channels per layer")
        ax.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
