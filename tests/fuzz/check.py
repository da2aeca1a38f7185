"""The fuzz property, checked on one spec.

Either the contract holds and the pruned model is smaller, or nothing was removed and every channel
of every parameter is pinned with a reason (or the ratio is too small to remove a whole channel),
or prunec refused the request with a documented, expected error (an unreachable MACs/params
target). Anything else is a failure: an internal error (any exception that is not a documented
prunec error, or a PassError wrapping one), a mismatch (verification failed, or the independent
contract check below disagrees), or a broken promise (original changed, wrong parameter count).
"""

from __future__ import annotations

import json
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import prunec
from prunec.inputs import ExampleInputs
from tests.fuzz.build import build
from tests.helpers import expected_param_count, outputs_close, state_hash

PRUNED, PINNED, REFUSED, FAILURE = "pruned", "pinned", "refused", "failure"


@dataclass
class Outcome:
    """What happened to one spec."""

    status: str
    detail: str = ""
    kind: str = ""
    """For failures: 'internal', 'mismatch' or 'contract'."""
    extra: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status}{' (' + self.kind + ')' if self.kind else ''}: {self.detail}"


def prune_kwargs(spec: dict[str, Any], model: torch.nn.Module) -> dict[str, Any]:
    """prunec.prune keyword arguments from the spec's pruning settings."""
    p = spec["prune"]
    kwargs: dict[str, Any] = {"criterion": p["criterion"], "round_to": p["round_to"], "output": p["output"]}
    if "ratio" in p:
        kwargs["ratio"] = p["ratio"]
    else:
        kwargs["target"] = p["target"]
    if "tracer" in p:
        kwargs["tracer"] = p["tracer"]
    if p.get("ignore_pick") is not None:
        names = [n for n, _ in model.named_modules() if n]
        if names:
            kwargs["ignore"] = [names[p["ignore_pick"] % len(names)]]
    return kwargs


def _state_numel(model: torch.nn.Module) -> int:
    seen: set[int] = set()
    total = 0
    for t in model.state_dict(keep_vars=True).values():
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel()
    return total


def _unexplained_axes(analysis: prunec.Analysis) -> list[str]:
    """Parameter axes 0/1 with atoms that are neither in a group nor pinned with a reason."""
    cr = analysis.coupling
    table = cr.atoms
    grouped: set[tuple[str, int]] = {(m.param, m.dim) for g in analysis.groups for m in g.members}
    out = []
    for v in analysis.graph.state_values():
        for k in range(min(v.rank, 2)):
            if v.shape[k] <= 1 or (str(v.param), k) in grouped:
                continue
            comps = cr.labels[table.atoms(table.value_slot0[v.name] + k)]
            bad = ~cr.comp_pinned[comps] | (cr.comp_pin_reason[comps] < 0)
            if bad.any():
                out.append(f"{v.param}[{k}]")
    return out


def _contract(model: torch.nn.Module, x: Any, result: prunec.PruneResult) -> float:
    """Independent check: the zeroed original (eager) vs the pruned model, on three inputs."""
    inputs = ExampleInputs.from_user(x)
    ref = prunec.zeroed_copy(model, result.removed).eval()
    checks = [inputs, inputs.randomized(21), inputs.randomized(22)]
    if result.output_kind == "module":  # a same-class model must also work at another batch size
        bigger = torch.utils._pytree.tree_map(lambda t: torch.cat([t, t[:1]]), x)
        checks.append(ExampleInputs.from_user(bigger).randomized(23))
    worst = 0.0
    with torch.no_grad():
        for inp in checks:
            worst = max(worst, outputs_close(inp.call(result.model), inp.call(ref)))
    return worst


def _round_trip(spec: dict[str, Any], result: prunec.PruneResult, x: Any) -> str:
    """Save, load onto a freshly built original; '' when bit-identical with equal outputs."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pruned"
        prunec.save(result, path)
        fresh, _ = build(spec)
        loaded = prunec.load(path, fresh)
    want, got = result.model.state_dict(), loaded.state_dict()
    if list(want) != list(got):
        return f"state_dict names differ after load: {sorted(set(want) ^ set(got))[:5]}"
    for k in want:
        if want[k].shape != got[k].shape or not torch.equal(want[k], got[k]):
            return f"'{k}' differs after load"
    inputs = ExampleInputs.from_user(x)
    with torch.no_grad():
        diff = outputs_close(inputs.call(result.model), inputs.call(loaded), tol=0.0)
    return "" if diff == 0.0 else f"outputs differ after load by {diff:.3g}"


def tolerance(spec: dict[str, Any]) -> float:
    """The contract's 1e-4 in float32/64; half precision rounds at about 1e-3 per op."""
    return 1e-4 if spec.get("dtype", "float32") in ("float32", "float64") else 3e-2


def run_case(spec: dict[str, Any], *, round_trip: bool | None = None) -> Outcome:
    """Build, prune and check one spec; never raises."""
    try:
        model, x = build(spec)
    except Exception as exc:
        return Outcome(FAILURE, f"spec does not build: {type(exc).__name__}: {exc}", "generator")
    kwargs = prune_kwargs(spec, model)
    before = state_hash(model)
    try:
        result = prunec.prune(model, x, **kwargs)
    except prunec.TargetError as exc:
        if "target" in kwargs and any(m in str(exc) for m in ("cannot be reached", "cannot be met within")):
            return Outcome(REFUSED, str(exc), "target")
        return Outcome(FAILURE, f"TargetError: {exc}", "internal")
    except prunec.TraceError as exc:
        if "the traced program fails on the same inputs" in str(exc):  # a torch.export limitation
            return Outcome(REFUSED, str(exc), "export")
        return Outcome(FAILURE, f"TraceError: {exc}", "internal")
    except prunec.VerificationError as exc:
        return Outcome(FAILURE, str(exc), "mismatch")
    except (prunec.PassOrderError, prunec.PostconditionError, prunec.PipelineSyntaxError) as exc:
        return Outcome(FAILURE, f"{type(exc).__name__}: {exc}", "internal")
    except Exception as exc:
        tb = traceback.format_exc(limit=-4)
        return Outcome(FAILURE, f"{type(exc).__name__}: {exc}\n{tb}", "internal")
    try:
        return _check_result(spec, model, x, kwargs, before, result, round_trip)
    except Exception as exc:
        tb = traceback.format_exc(limit=-4)
        return Outcome(FAILURE, f"checking the result raised {type(exc).__name__}: {exc}\n{tb}", "contract")


def _check_result(spec: dict[str, Any], model: torch.nn.Module, x: Any, kwargs: dict[str, Any],
                  before: str, result: prunec.PruneResult, round_trip: bool | None) -> Outcome:
    if state_hash(model) != before:
        return Outcome(FAILURE, "prune() changed the original model", "contract")
    if result.verification is None or not result.verification.passed:
        return Outcome(FAILURE, f"verification did not pass: {result.verification}", "mismatch")
    want = expected_param_count(model, result.removed)
    if prunec.count_params(result.model) != want:
        return Outcome(FAILURE, f"{prunec.count_params(result.model)} parameters, the removed slices "
                                f"imply {want}", "contract")
    unexplained = _unexplained_axes(result.analysis)
    if unexplained:
        return Outcome(FAILURE, f"axes neither grouped nor pinned with a reason: {unexplained}", "contract")
    if all(g.zero_invariant for g in result.removed):
        diff = _contract(model, x, result)
        if not diff <= tolerance(spec):
            return Outcome(FAILURE, f"zeroed original vs pruned: relative difference {diff:.3g}", "mismatch")
    if round_trip if round_trip is not None else spec.get("save", False):
        try:
            problem = _round_trip(spec, result, x)
        except Exception as exc:
            problem = f"save/load raised {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=-4)}"
        if problem:
            return Outcome(FAILURE, problem, "persistence")
    if not result.removed:
        return Outcome(PINNED, f"{len(result.analysis.groups)} groups, nothing removed at {kwargs}")
    if _state_numel(result.model) >= _state_numel(model):
        return Outcome(FAILURE, "channels were removed but the model is not smaller", "contract")
    return Outcome(PRUNED, f"{result.report.channels_removed} channels removed, {result.output_kind}",
                   extra={"output_kind": result.output_kind,
                          "zero_invariant": all(g.zero_invariant for g in result.removed)})


def spec_text(spec: dict[str, Any]) -> str:
    """The spec as one line of JSON (paste it into tests/fuzz/test_regressions.py)."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


def summarize(outcomes: list[Outcome]) -> dict[str, int]:
    """Counts per status."""
    counts = {PRUNED: 0, PINNED: 0, REFUSED: 0, FAILURE: 0}
    for o in outcomes:
        counts[o.status] += 1
    return counts


