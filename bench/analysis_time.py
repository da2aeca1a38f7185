"""Analysis time (trace + groups) and peak memory versus graph size, side by side with Torch-Pruning.

    python bench/analysis_time.py                    # MLP depth 10/100/1000 and ResNet-50
    python bench/analysis_time.py --depths 10 100 1000 3000 --repeat 5
    python bench/analysis_time.py --rounds 3 --tools prunec torch_pruning   # a noisy machine

For each model, in a fresh subprocess per tool (so peak memory is that tool's own):
- prunec: `prunec.analyze(model, x)` (default tracer: one recorded eager forward), and with
  tracer='export' (torch.export) for reference;
- Torch-Pruning: `DependencyGraph().build_dependency(model, example_inputs=x)` when `torch_pruning`
  is installed (it is never a prunec dependency), and that plus `list(dg.get_all_groups())`
  ('torch_pruning+groups'): prunec's analysis also partitions the parameters into groups, which
  Torch-Pruning does only in get_all_groups.
Time is CPU time of the process (steadier than wall time on a shared machine; one torch thread, so
the two agree on an idle one), the best of `--repeat` runs after one warm-up on the same model;
µs/node divides it by the number of ops in prunec's IR of that model (the same denominator for
every tool). Peak memory is the largest Python heap (tracemalloc, which also sees numpy) over one
more run, and the growth of the process's peak resident set over the whole measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from typing import Any

TAG = "ANALYSIS_TIME "


def build(name: str) -> tuple[Any, Any]:
    """The model and its example input."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    if name.startswith("mlp"):
        depth = int(name[3:])
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [nn.Linear(64, 64), nn.ReLU()]
        return nn.Sequential(*layers, nn.Linear(64, 10)).eval(), torch.randn(8, 64)
    import torchvision

    return torchvision.models.get_model(name, weights=None).eval(), torch.randn(1, 3, 224, 224)


def runner(tool: str) -> Any:
    """A function model, x -> None that performs the tool's analysis."""
    if tool == "torch_pruning":
        import torch_pruning as tp

        return lambda m, x: tp.DependencyGraph().build_dependency(m, example_inputs=x)
    if tool == "torch_pruning+groups":
        import torch_pruning as tp

        return lambda m, x: list(tp.DependencyGraph().build_dependency(m, example_inputs=x).get_all_groups())
    import prunec

    tracer = "export" if tool == "prunec-export" else "auto"
    return lambda m, x: prunec.analyze(m, x, tracer=tracer)


def measure(name: str, tool: str, repeat: int) -> dict[str, Any]:
    """In this process: warm up, time `repeat` runs, then one traced run for peak memory."""
    import torch

    import prunec

    torch.set_num_threads(1)
    model, x = build(name)
    nodes = len(prunec.analyze(model, x).graph)
    run = runner(tool)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    run(model, x)
    best = float("inf")
    for _ in range(repeat):
        t = time.process_time()
        run(model, x)
        best = min(best, time.process_time() - t)
    tracemalloc.start()
    run(model, x)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0
    return {
        "model": name,
        "tool": tool,
        "nodes": nodes,
        "seconds": best,
        "heap_mb": peak / 2**20,
        "rss_mb": rss / 1024,
        "phases": stage_times(model, x, repeat) if tool == "prunec" else None,
    }


def stage_times(model: Any, x: Any, repeat: int) -> dict[str, float]:
    """CPU seconds of each stage prunec.analyze reports (trace, couple, group) in the fastest of
    `repeat` more runs, read through its public progress callback."""
    import prunec

    best: dict[str, float] = {}
    for _ in range(repeat):
        marks: list[tuple[str, float]] = []
        prunec.analyze(model, x, progress=lambda event: marks.append((event.stage, time.process_time())))
        spans = {stage: end - start for (stage, start), (_, end) in zip(marks, marks[1:])}
        if not best or sum(spans.values()) < sum(best.values()):
            best = spans
    return best


def marginal_costs(rows: dict[tuple[str, str], dict[str, Any]], names: list[str], tool: str) -> str | None:
    """For MLPs of increasing depth: µs per added node between consecutive depths, and the fixed cost
    left at the smallest depth once its nodes are paid at the first marginal rate."""
    mlps = sorted((rows[(n, tool)] for n in names if n.startswith("mlp") and (n, tool) in rows),
                  key=lambda r: r["nodes"])
    if len(mlps) < 2:
        return None
    rates = [(b["seconds"] - a["seconds"]) / (b["nodes"] - a["nodes"]) for a, b in zip(mlps, mlps[1:])]
    fixed = mlps[0]["seconds"] - rates[0] * mlps[0]["nodes"]
    steps = ", ".join(f"{a['model']}→{b['model']} {r * 1e6:.1f}" for a, b, r in zip(mlps, mlps[1:], rates))
    return f"  {tool}: µs per added node {steps}; fixed cost at {mlps[0]['model']} {fixed * 1e3:.2f} ms"


def _child(name: str, tool: str, repeat: int) -> dict[str, Any] | None:
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--one", name, tool, str(repeat)],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    for line in proc.stdout.splitlines():
        if line.startswith(TAG):
            return json.loads(line[len(TAG) :])
    print(f"{name} / {tool} failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}", file=sys.stderr)
    return None


def main() -> None:
    """Measure every (model, tool) pair and print the table."""
    if "--one" in sys.argv:
        i = sys.argv.index("--one")
        print(TAG + json.dumps(measure(sys.argv[i + 1], sys.argv[i + 2], int(sys.argv[i + 3]))), flush=True)
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depths", type=int, nargs="*", default=[10, 100, 1000])
    ap.add_argument("--models", nargs="*", default=["resnet50"])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1,
                    help="measure every (model, tool) pair this many times, the tools in alternating order "
                         "each round, and keep each pair's best (evens out a noisy machine)")
    ap.add_argument("--tools", nargs="*", help="only these tools (default: every one available)")
    args = ap.parse_args()
    try:
        import torch_pruning  # noqa: F401

        tools = ["prunec", "prunec-export", "torch_pruning", "torch_pruning+groups"]
    except ImportError:
        tools = ["prunec", "prunec-export"]
    if args.tools:
        tools = [t for t in tools if t in args.tools]
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    names = [f"mlp{d}" for d in args.depths] + list(args.models)
    for round_ in range(args.rounds):
        for name in names:
            for tool in tools if round_ % 2 == 0 else tools[::-1]:
                r = _child(name, tool, args.repeat)
                if r is not None:
                    best = rows.get((name, tool))
                    if best is None or r["seconds"] < best["seconds"]:
                        rows[(name, tool)] = r
                    print(f"{name} {tool}: {r['seconds'] * 1e3:.1f} ms", file=sys.stderr, flush=True)
    head = "| model | IR ops |" + "".join(
        f" {t} CPU ms | {t} µs/node | {t} heap MB | {t} RSS MB |" for t in tools
    )
    print("\n" + head)
    print("|---|---|" + "---|---|---|---|" * len(tools))
    for name in names:
        cells = []
        nodes = next((r["nodes"] for (n, _), r in rows.items() if n == name), 0)
        for tool in tools:
            r = rows.get((name, tool))
            cells += (
                ["-"] * 4
                if r is None
                else [
                    f"{r['seconds'] * 1e3:.1f}",
                    f"{r['seconds'] * 1e6 / max(nodes, 1):.0f}",
                    f"{r['heap_mb']:.1f}",
                    f"{r['rss_mb']:.0f}",
                ]
            )
        print(f"| {name} | {nodes} | " + " | ".join(cells) + " |")
    phased = [(name, rows[(name, "prunec")]) for name in names
              if rows.get((name, "prunec"), {}).get("phases")]
    if phased:
        print("\nprunec by stage, CPU ms (fastest of --repeat more runs, read through progress=):")
        for name, r in phased:
            print(f"  {name}: " + ", ".join(f"{k} {v * 1e3:.2f}" for k, v in r["phases"].items()))
    lines = [line for line in (marginal_costs(rows, names, t) for t in tools) if line]
    if lines:
        print("\nMLP cost split (a line through the two smallest depths):")
        print("\n".join(lines))
    if "torch_pruning" in tools:
        print("\nprunec time / Torch-Pruning time (below 1: prunec is faster):")
        for name in names:
            a, b, c = (rows.get((name, t)) for t in ("prunec", "torch_pruning", "torch_pruning+groups"))
            if a and b:
                vs_groups = f", vs graph + groups {a['seconds'] / c['seconds']:.2f}" if c else ""
                print(f"  {name}: vs build_dependency {a['seconds'] / b['seconds']:.2f}{vs_groups}")


if __name__ == "__main__":
    main()
