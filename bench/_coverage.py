"""Shared runner of the coverage sweeps: prune one model, check the contract, print one table row.

Each model runs in its own subprocess (a crash, an out-of-memory kill or a time-out costs one row,
not the sweep). A row says whether the model pruned with the contract holding, which output kind
prunec returned, why channels stayed (pins other than the model's own input and output) and, when
it failed, the error's class and first line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

ROW_TAG = "COVERAGE_ROW "

Builder = Callable[[], tuple[Any, Any]]
"""Returns (model, example_inputs)."""


@dataclass
class Row:
    """One model's outcome."""

    model: str
    ok: bool
    output: str = "-"
    params_before: int = 0
    params_after: int = 0
    groups: int = 0
    contract: str = "-"
    """'eager' (zeroed original == pruned, checked here), 'removal-ref' (non-zero-invariant groups:
    prunec's removal reference), or '-'."""
    pinned: str = ""
    error: str = ""
    seconds: float = 0.0


_AT = re.compile(r" \(at '[^']*'\)")


def pin_summary(analysis: Any, limit: int = 3) -> str:
    """The most frequent reasons channels stayed, except the model's own inputs and outputs."""
    reasons: Counter[str] = Counter()
    for p in analysis.pinned:
        reasons[_AT.sub("", p.reason)] += 1
    for p in analysis.pinned_params:
        text = _AT.sub("", p.reason)
        if text in ("model output", "model input"):
            continue
        reasons[text] += 1
    return "; ".join(f"{n}x {r[:70]}" for r, n in reasons.most_common(limit))


def run_one(name: str, build: Builder, ratio: float) -> Row:
    """Prune one model at `ratio` and check the contract independently of prunec's verifier."""
    import torch
    from prunec.zoo import randomize_norms

    import prunec
    from prunec.inputs import ExampleInputs

    torch.manual_seed(0)
    start = time.perf_counter()
    row = Row(name, False)
    try:
        model, example = build()
        model.eval()
        randomize_norms(model, seed=1)
        result = prunec.prune(model, example, ratio=ratio)
    except Exception as exc:
        row.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
        row.seconds = time.perf_counter() - start
        return row
    rep = result.report
    row.output, row.groups = rep.output_kind, rep.groups_found
    row.params_before, row.params_after = rep.params_before, rep.params_after
    row.pinned = pin_summary(result.analysis)
    if all(g.zero_invariant for g in result.removed):
        ref = prunec.zeroed_copy(model, result.removed).eval()
        inputs = ExampleInputs.from_user(example)
        worst = 0.0
        with torch.no_grad():
            for inp in (inputs, inputs.randomized(7)):
                worst = max(worst, _rel_diff(inp.call(result.model.eval()), inp.call(ref)))
        row.contract = f"eager {worst:.1e}"
        row.ok = worst <= 1e-4
        if not row.ok:
            row.error = f"contract broken: relative difference {worst:.3g}"
    else:
        row.contract = "removal-ref"
        row.ok = bool(result.verification and result.verification.passed)
    row.seconds = time.perf_counter() - start
    return row


def _rel_diff(a: Any, b: Any) -> float:
    import torch

    la, lb = torch.utils._pytree.tree_flatten(a)[0], torch.utils._pytree.tree_flatten(b)[0]
    if len(la) != len(lb):
        return float("inf")
    worst = 0.0
    for x, y in zip(la, lb):
        if not isinstance(y, torch.Tensor):
            continue
        if not isinstance(x, torch.Tensor) or x.shape != y.shape:
            return float("inf")
        scale = float(y.abs().max()) if y.numel() else 0.0
        diff = float((x.double() - y.double()).abs().max()) if y.numel() else 0.0
        worst = max(worst, diff / scale if scale > 1e-12 else diff)
    return worst


def print_table(rows: Sequence[Row], title: str) -> None:
    """The coverage table, then the totals."""
    print(f"\n## {title}\n")
    print("| model | pruned ok | output | params before -> after | groups | contract | pinned reasons "
          "| error | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        params = f"{r.params_before / 1e6:.2f}M -> {r.params_after / 1e6:.2f}M" if r.params_before else "-"
        print(f"| {r.model} | {'yes' if r.ok else 'NO'} | {r.output} | {params} | {r.groups} | {r.contract} | "
              f"{r.pinned or '-'} | {r.error or '-'} | {r.seconds:.1f} |")
    ok = sum(r.ok for r in rows)
    print(f"\n{ok}/{len(rows)} pruned with the contract holding ({100 * ok / max(len(rows), 1):.1f}%); "
          f"{sum(r.output == 'graph_module' for r in rows)} as GraphModule; "
          f"{sum(bool(r.error) for r in rows)} raised or broke the contract.")


def sweep(title: str, names: Sequence[str], script: str, argv: Sequence[str] | None = None) -> list[Row]:
    """Run every model of `names` in its own subprocess (`script --one NAME`) and print the table."""
    ap = argparse.ArgumentParser(description=title)
    ap.add_argument("--only", default="", help="regular expression: run matching models only")
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--timeout", type=int, default=900, help="seconds per model")
    ap.add_argument("--json", default="", help="also write the rows to this file")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per model (1: steady on a busy machine)")
    ap.add_argument("--budget", type=float, default=0.0,
                    help="seconds for the whole sweep: no model starts after it (0: no limit)")
    args = ap.parse_args(argv)
    chosen = [n for n in names if re.search(args.only, n)]
    rows: list[Row] = []
    began = time.perf_counter()
    not_run: list[str] = []
    for i, name in enumerate(chosen):
        if args.budget and time.perf_counter() - began > args.budget:
            not_run = list(chosen[i:])
            break
        rows.append(_run_isolated(script, name, args.ratio, args.timeout, args.threads))
        r = rows[-1]
        print(f"{name}: {'ok' if r.ok else 'FAIL'} {r.output} {r.seconds:.1f}s {r.error}", file=sys.stderr,
              flush=True)
    print_table(rows, title)
    if not_run:
        print(f"budget of {args.budget:.0f}s spent; not run ({len(not_run)}): {', '.join(not_run)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in rows], f, indent=1)
    return rows


def _run_isolated(script: str, name: str, ratio: float, timeout: int, threads: int) -> Row:
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS=str(threads))
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, script, "--one", name, "--ratio", str(ratio)],
                              capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return Row(name, False, error=f"timed out after {timeout}s", seconds=time.perf_counter() - start)
    for line in proc.stdout.splitlines():
        if line.startswith(ROW_TAG):
            return Row(**json.loads(line[len(ROW_TAG):]))
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:160]
    return Row(name, False, error=f"process exited {proc.returncode}: {tail}",
               seconds=time.perf_counter() - start)


def child_main(builders: Callable[[str], Builder]) -> bool:
    """In the subprocess: when called with --one NAME, run it, print the row and return True."""
    if "--one" not in sys.argv:
        return False
    name = sys.argv[sys.argv.index("--one") + 1]
    ratio = float(sys.argv[sys.argv.index("--ratio") + 1]) if "--ratio" in sys.argv else 0.5
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    row = run_one(name, builders(name), ratio)
    print(ROW_TAG + json.dumps(asdict(row)), flush=True)
    return True
