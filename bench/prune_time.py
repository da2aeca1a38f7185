"""One-call prune time, traced by the recording (the default) and by torch.export, side by side.

    python bench/prune_time.py                                  # zoo ResNet, torchvision models
    python bench/prune_time.py --models resnet50 vit_b_16 --repeat 3

For each model and tracer, in one process (tracers alternating, best of `--repeat` after a warm-up):
the CPU time of `prunec.prune(model, x, ratio=0.5, tracer=...)` and of each stage it reports through
`progress=` (trace, couple, group, then the passes: score, select, rewrite, verify). The two pruned
models are checked to be the same (removed channels, state values); a difference is printed.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

import prunec

TRACERS = ("auto", "export")


def build(name: str) -> tuple[torch.nn.Module, Any]:
    """A zoo model (by its zoo name) or a torchvision model, with its example input."""
    from prunec.zoo import ZOO

    torch.manual_seed(0)
    if name in ZOO:
        entry = ZOO[name]
        return entry.build().eval(), entry.example_inputs()
    import torchvision

    return torchvision.models.get_model(name, weights=None).eval(), torch.randn(1, 3, 224, 224)


def timed_prune(model: torch.nn.Module, x: Any, tracer: str) -> tuple[float, dict[str, float], Any]:
    """CPU seconds of one prune, its stages' seconds, and the result."""
    marks: list[tuple[str, float]] = []
    start = time.process_time()
    result = prunec.prune(model, x, ratio=0.5, tracer=tracer,
                          progress=lambda e: marks.append((e.stage, time.process_time())))
    total = time.process_time() - start
    stages = {stage: end - t0 for (stage, t0), (_, end) in zip(marks, marks[1:])}
    return total, stages, result


def same_model(a: Any, b: Any) -> str:
    """'' when both results removed the same channels and hold the same state; else what differs."""
    def removed(r: Any) -> list[list[tuple]]:
        return [sorted((m.param, m.dim, m.indices) for m in g.members) for g in r.removed]

    if removed(a) != removed(b):
        return "removed channels differ"
    sa, sb = a.model.state_dict(), b.model.state_dict()
    if list(sa) != list(sb) or any(not torch.equal(sa[k], sb[k]) for k in sa):
        return "pruned state differs"
    return ""


def main() -> None:
    """Time every model with both tracers and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*",
                    default=["resnet_bottleneck", "gpt2", "resnet50", "efficientnet_b0", "vit_b_16"])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows, stage_lines = [], []
    for name in args.models:
        model, x = build(name)
        best: dict[str, tuple[float, dict[str, float], Any]] = {}
        for tracer in TRACERS:
            timed_prune(model, x, tracer)  # warm-up
        for _ in range(args.repeat):
            for tracer in TRACERS:
                run = timed_prune(model, x, tracer)
                if tracer not in best or run[0] < best[tracer][0]:
                    best[tracer] = run
        (rt, rs, rr), (et, es, er) = best["auto"], best["export"]
        rows.append(f"| {name} | {rr.analysis.source.tracer} | {rt:.3f} | {et:.3f} | {et / rt:.1f}x | "
                    f"{rs.get('trace', 0):.3f} | {es.get('trace', 0):.3f} | {same_model(rr, er) or 'yes'} |")
        for label, stages in (("default", rs), ("export", es)):
            stage_lines.append(f"  {name} ({label}): " + ", ".join(f"{k} {v:.3f}" for k, v in stages.items()))
        print(rows[-1], flush=True)
    print("\n| model | default traced by | default prune s | tracer='export' prune s | speed-up "
          "| default: trace s | export: trace s | same pruned model |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print("\nCPU seconds by stage (read through progress=):")
    print("\n".join(stage_lines))


if __name__ == "__main__":
    main()
