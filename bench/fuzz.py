"""Long fuzz run: random architectures pruned at random settings; prints counts and failures.

    python bench/fuzz.py --cases 2000 [--seed S] [--start K] [--onnx]

Case i of seed S draws its spec from random.Random(S * 1_000_000 + i), so any failure is replayed
with `--seed S --start i --cases 1`; its spec (JSON) is printed too, to paste into
tests/fuzz/test_regressions.py.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests.fuzz

import torch

from tests.fuzz.check import FAILURE, REFUSED, run_case, spec_text, summarize
from tests.fuzz.check_onnx import SKIPPED, run_onnx_case
from tests.fuzz.grammar import RandomChoices, generate


def case_seed(seed: int, index: int) -> int:
    """The random seed of case `index` of run `seed`."""
    return seed * 1_000_000 + index


def main(argv: list[str] | None = None) -> int:
    """Run the cases, print a progress line per 50 cases, then the counts table and failures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--start", type=int, default=0, help="first case index (to run in chunks)")
    ap.add_argument("--max-blocks", type=int, default=6)
    ap.add_argument("--no-round-trip", action="store_true", help="skip the save/load round trips")
    ap.add_argument("--time-limit", type=float, default=None,
                    help="stop starting cases after this many seconds (the counts still print)")
    ap.add_argument("--onnx", action="store_true",
                    help="also export each case to ONNX (where torch.onnx can) and prune the file")
    ap.add_argument("--onnx-only", action="store_true", help="the ONNX path only (skip the torch prune)")
    args = ap.parse_args(argv)
    args.onnx = args.onnx or args.onnx_only
    torch.set_num_threads(2)
    round_trip = False if args.no_round_trip else None
    outcomes: list = []
    onnx_outcomes: list = []
    failures = []
    kinds: dict[str, int] = {}
    refused: dict[str, int] = {}
    done = 0
    t0 = time.time()
    for i in range(args.start, args.start + args.cases):
        if args.time_limit is not None and time.time() - t0 > args.time_limit:
            print(f"time limit {args.time_limit:.0f}s reached after {done} of {args.cases} cases", flush=True)
            break
        spec = generate(RandomChoices(case_seed(args.seed, i)), max_blocks=args.max_blocks)
        runs = [] if args.onnx_only else [("", outcomes, lambda s: run_case(s, round_trip=round_trip))]
        if args.onnx:
            runs.append(("onnx-", onnx_outcomes, run_onnx_case))
        for prefix, into, runner in runs:
            out = runner(spec)
            into.append(out)
            if out.status == REFUSED:
                refused[prefix + out.kind] = refused.get(prefix + out.kind, 0) + 1
            if out.status == FAILURE:
                failures.append((i, spec, out))
                kinds[prefix + out.kind] = kinds.get(prefix + out.kind, 0) + 1
                print(f"FAILURE {prefix}case {i} (seed {args.seed}): {out.kind}: "
                      f"{out.detail.splitlines()[0][:300]}", flush=True)
        done += 1
        if done % 50 == 0:
            print(f"  {done} cases, {time.time() - t0:.0f}s: torch {summarize(outcomes)}"
                  + (f", onnx {summarize(_exported(onnx_outcomes))}" if args.onnx else ""), flush=True)
    print(f"\nfuzz seed {args.seed}, cases {args.start}..{args.start + done - 1}, {time.time() - t0:.0f}s")
    if not args.onnx_only:
        _table("torch path", outcomes)
    if args.onnx:
        exported = _exported(onnx_outcomes)
        _table(f"ONNX path (the same cases exported with torch.onnx; {len(onnx_outcomes) - len(exported)} "
               "not exportable, skipped)", exported)
    if refused:
        print("refused by reason: " + ", ".join(f"{k}={n}" for k, n in sorted(refused.items())))
    print("failures by kind: " + (", ".join(f"{k}={n}" for k, n in sorted(kinds.items())) or "none"))
    for i, spec, out in failures:
        print(f"\n--- case {i} (replay: python bench/fuzz.py --seed {args.seed} --start {i} --cases 1)")
        print(out.detail[:3000])
        print("spec: " + spec_text(spec))
    return 1 if failures else 0


def _exported(outcomes: list) -> list:
    return [o for o in outcomes if o.status != SKIPPED]


def _table(title: str, outcomes: list) -> None:
    counts = summarize(outcomes)
    print(f"\n{title}")
    print(f"{'cases':>8} {'pruned':>8} {'pinned':>8} {'refused':>8} {'failures':>9}")
    print(f"{len(outcomes):>8} {counts['pruned']:>8} {counts['pinned']:>8} {counts['refused']:>8} "
          f"{counts['failure']:>9}")


if __name__ == "__main__":
    sys.exit(main())
