"""Coverage table: HuggingFace transformers and timm models pruned with no sizes and no fix-ups.

For each model (small random-weight configs, see prunec.zoo.external): the groups found per kind,
then one prune per kind (heads, MLP width, hidden size) and one with all kinds at ratio 0.5. Each
cell is the output kind ('mod' = the model's own classes, 'gm' = the GraphModule fallback, '-' =
no group of that kind) and the share of parameters kept; every prune passed prunec's verification
(or the cell says why not). 'params' is before -> after the 'all' prune; 'max diff' is the worst
relative output difference prunec's verification measured over the four prunes. For HuggingFace
models the 'all' prune is saved with save_pretrained and reloaded with from_pretrained ('rt': ok,
or 'no' with the reason prunec's report gave).

    python bench/transformers_coverage.py              # both libraries
    python bench/transformers_coverage.py --only timm
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

import torch
from prunec.zoo.external import HF_CASES, TIMM_CASES, ExternalCase

import prunec

KINDS = (("heads",), ("mlp",), ("hidden",), None)


def _call(model: torch.nn.Module, x: object) -> torch.Tensor:
    out = model(**x) if isinstance(x, dict) else model(x)
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "logits"):
        return out.logits
    return out[0]


def _roundtrip(result: prunec.PruneResult, x: object) -> str:
    if result.output_kind != "module" or not hasattr(result.model, "save_pretrained"):
        return "-"
    if any("will not reload" in n for n in result.report.notes):
        return "no (noted)"
    with tempfile.TemporaryDirectory() as d:
        result.model.save_pretrained(d)
        reloaded = type(result.model).from_pretrained(d).eval()
    with torch.no_grad():
        diff = float((_call(result.model, x) - _call(reloaded, x)).abs().max())
    return "ok" if diff < 1e-5 else f"diff {diff:.2g}"


def run_case(case: ExternalCase) -> dict[str, object]:
    """Analyse and prune one model every way; never raises (errors become cells)."""
    row: dict[str, object] = {"name": f"{case.library}:{case.name}"}
    try:
        model, x = case.build()
    except Exception as exc:
        row["error"] = f"build: {type(exc).__name__}: {exc}"
        return row
    row["params"] = prunec.count_params(model)
    start = time.perf_counter()
    analysis = prunec.analyze(model, x)
    row["groups"] = {k: sum(1 for g in analysis.groups if g.kind == k) for k in ("heads", "mlp", "hidden")}
    with torch.no_grad():
        want = _call(model, x).shape
    for kinds in KINDS:
        key = "all" if kinds is None else kinds[0]
        if kinds is not None and row["groups"][kinds[0]] == 0:  # type: ignore[index]
            row[key] = "-"
            continue
        try:
            result = prunec.prune(model, x, ratio=0.5, kinds=kinds)
            with torch.no_grad():
                got = _call(result.model, x).shape
            ok = got == want and result.verification is not None and result.verification.passed
            kind = "mod" if result.output_kind == "module" else "gm"
            row[key] = f"{kind} {result.report.params_ratio:.2f}" + ("" if ok else " BAD")
            if result.verification is not None:
                worst = max(float(row.get("diff", 0.0)), result.verification.max_relative_diff)  # type: ignore[arg-type]
                row["diff"] = worst
            if kinds is None:
                row["after"] = prunec.count_params(result.model)
                row["rt"] = _roundtrip(result, x) if case.library == "transformers" else "-"
                row["notes"] = [n for n in result.report.notes if "uniform ratio" not in n]
        except prunec.PruneError as exc:
            row[key] = f"error: {type(exc).__name__}"
            row.setdefault("notes", []).append(str(exc).splitlines()[0][:160])  # type: ignore[union-attr]
    row["seconds"] = time.perf_counter() - start
    return row


def main() -> None:
    """Print the coverage table and the count of models that prune and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("transformers", "timm"))
    parser.add_argument("--notes", action="store_true", help="print each model's report notes")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    cases = [c for c in [*HF_CASES.values(), *TIMM_CASES.values()] if args.only in (None, c.library)]
    rows = [run_case(c) for c in cases]
    print(f"{'model':<26} {'params':>13} {'groups h/m/d':>13} {'heads':>9} {'mlp':>9} {'hidden':>9} "
          f"{'all':>9} {'max diff':>8} {'rt':>10} {'time':>6}")
    good = 0
    for r in rows:
        if "error" in r:
            print(f"{r['name']:<26} {r['error']}")
            continue
        g = r["groups"]
        after = f"{r['after'] / 1e3:.0f}K" if "after" in r else "?"  # type: ignore[operator]
        print(f"{r['name']:<26} {r['params'] / 1e3:>5.0f}K->{after:>5} "  # type: ignore[operator]
              f"{g['heads']:>5}/{g['mlp']}/{g['hidden']:<4} "  # type: ignore[index]
              f"{r['heads']:>9} {r['mlp']:>9} {r['hidden']:>9} {r['all']:>9} "
              f"{r.get('diff', float('nan')):>8.1e} "
              f"{r.get('rt', '-'):>10} {r['seconds']:>5.1f}s")
        cells = [r[k] for k in ("heads", "mlp", "hidden", "all") if r[k] != "-"]
        good += all(isinstance(c, str) and c.split()[0] in ("mod", "gm") and not c.endswith("BAD")
                    for c in cells)
        if args.notes:
            for n in r.get("notes", []):  # type: ignore[union-attr]
                print(f"    note: {n}")
    own = sum(1 for r in rows if "error" not in r and str(r["all"]).startswith("mod"))
    print(f"{good}/{len(rows)} prune every kind and run verified; {own}/{len(rows)} come back as their own "
          "class "
          "(the others as the verified GraphModule); ratio 0.5 per group, no sizes or fix-ups given")


if __name__ == "__main__":
    main()
