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
                    help="stop after the case running when this many seconds have passed (counts still print)")
    ap.add_argument("--onnx", action="store_true",
                    help="also export each case to ONNX (where torch.onnx can) and prune the file")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    outcomes = []
    onnx_outcomes = []
    failures = []
    kinds: dict[str, int] = {}
    refused: dict[str, int] = {}
    t0 = time.time()
    for i in range(args.start, args.start + args.cases):
        if args.time_limit is not None and time.time() - t0 > args.time_limit:
            print(f"time limit {args.time_limit:.0f}s reached after {len(outcomes)} of {args.cases} cases",
                  flush=True)
            break
        spec = generate(RandomChoices(case_seed(args.seed, i)), max_blocks=args.max_blocks)
        out = run_case(spec, round_trip=False if args.no_round_trip else None)
        outcomes.append(out)
        if out.status == REFUSED:
            refused[out.kind] = refused.get(out.kind, 0) + 1
        if out.status == FAILURE:
            failures.append((i, spec, out))
            kinds[out.kind] = kinds.get(out.kind, 0) + 1
            print(f"FAILURE case {i} (seed {args.seed}): {out.kind}: {out.detail.splitlines()[0][:300]}",
                  flush=True)
        if args.onnx:
            onnx_out = run_onnx_case(spec)
            onnx_outcomes.append(onnx_out)
            if onnx_out.status == FAILURE:
                failures.append((i, spec, onnx_out))
                kinds[f"onnx-{onnx_out.kind}"] = kinds.get(f"onnx-{onnx_out.kind}", 0) + 1
                print(f"FAILURE (onnx) case {i} (seed {args.seed}): {onnx_out.kind}: "
                      f"{onnx_out.detail.splitlines()[0][:300]}", flush=True)
        if (i - args.start + 1) % 50 == 0:
            c = summarize(outcomes)
            print(f"  {i - args.start + 1} cases, {time.time() - t0:.0f}s: {c}", flush=True)
    counts = summarize(outcomes)
    print(f"\nfuzz seed {args.seed}, cases {args.start}..{args.start + len(outcomes) - 1}, "
          f"{time.time() - t0:.0f}s")
    print(f"{'cases':>8} {'pruned':>8} {'pinned':>8} {'refused':>8} {'failures':>9}")
    print(f"{len(outcomes):>8} {counts['pruned']:>8} {counts['pinned']:>8} {counts['refused']:>8} "
          f"{counts['failure']:>9}")
    if args.onnx:
        exported = [o for o in onnx_outcomes if o.status != SKIPPED]
        oc = summarize(exported)
        skipped = len(onnx_outcomes) - len(exported)
        print(f"\nONNX path (the same cases exported with torch.onnx; {skipped} not exportable, skipped)")
        print(f"{'cases':>8} {'pruned':>8} {'pinned':>8} {'refused':>8} {'failures':>9}")
        print(f"{len(exported):>8} {oc['pruned']:>8} {oc['pinned']:>8} {oc['refused']:>8} {oc['failure']:>9}")
    if refused:
        print("refused by reason: " + ", ".join(f"{k}={n}" for k, n in sorted(refused.items())))
    if kinds:
        print("failures by kind: " + ", ".join(f"{k}={n}" for k, n in sorted(kinds.items())))
    for i, spec, out in failures:
        print(f"\n--- case {i} (replay: python bench/fuzz.py --seed {args.seed} --start {i} --cases 1)")
        print(out.detail[:3000])
        print("spec: " + spec_text(spec))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
