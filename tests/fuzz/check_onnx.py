"""The fuzz property on the ONNX path: export a spec's model (where torch.onnx can), prune the file.

The same outcomes as tests/fuzz/check.py: the contract holds (checked independently: the zeroed
original and the pruned model run in onnxruntime) and the model shrank, or nothing was removed, or
a documented refusal; never an internal error, never a mismatch, and the file never changes.
Models torch.onnx cannot export (custom ops, half precision) are skipped, not counted as cases.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import traceback
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

import prunec
from tests.fuzz.build import build
from tests.fuzz.check import FAILURE, PINNED, PRUNED, REFUSED, Outcome
from tests.onnx.helpers import expected_params, relative_diff, run, zeroed

SKIPPED = "skipped"


@contextlib.contextmanager
def _quiet_stdout():
    """The TorchScript exporter prints its whole IR graph (from C++) when it fails: silence fd 1."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _export(model: torch.nn.Module, x: Any, path: Path) -> tuple[dict[str, np.ndarray], str]:
    """Export with the TorchScript exporter; the feeds, or '' and why not."""
    args = (x["x"], x["aux"]) if isinstance(x, dict) else (x,)
    names = ["x", "aux"][: len(args)]
    try:
        with warnings.catch_warnings(), _quiet_stdout():
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(model, args, str(path), dynamo=False, input_names=names, opset_version=17)
            except Exception:
                torch.onnx.export(model, args, str(path), dynamo=True, input_names=names, opset_version=18,
                                  external_data=False, verbose=False)
        feeds = {n: a.numpy() for n, a in zip(names, args, strict=True)}
        with torch.no_grad():
            want = torch.utils._pytree.tree_flatten(model(*args))[0]
        got = run(onnx.load(str(path)), feeds)
    except Exception as exc:
        return {}, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]
    want_np = [w.detach().numpy() for w in want if isinstance(w, torch.Tensor)]
    if len(got) != len(want_np) or relative_diff(got, want_np) > 1e-4:
        return {}, "the exported model differs from the torch model (an exporter limitation)"
    return feeds, ""


def _fresh(feeds: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for k, v in feeds.items():
        if np.issubdtype(v.dtype, np.integer):
            out[k] = rng.integers(int(v.min()), int(v.max()) + 1, v.shape).astype(v.dtype)
        else:
            noise = rng.standard_normal(v.shape) * max(float(v.std()), 1e-3)
            out[k] = (noise + float(v.mean())).astype(v.dtype)
    return out


def run_onnx_case(spec: dict[str, Any]) -> Outcome:
    """Export, prune the file, check; never raises."""
    if spec.get("dtype", "float32") != "float32":
        return Outcome(SKIPPED, "half or double precision is not exported")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        model, x = build(spec)
        feeds, why = _export(model, x, path)
        if not feeds:
            return Outcome(SKIPPED, f"not exportable: {why}")
        return _prune_file(spec, path, feeds)


def _prune_file(spec: dict[str, Any], path: Path, feeds: dict[str, np.ndarray]) -> Outcome:
    p = spec["prune"]
    kwargs: dict[str, Any] = {"criterion": p["criterion"], "round_to": p["round_to"]}
    kwargs.update({"ratio": p["ratio"]} if "ratio" in p else {"target": p["target"]})
    before = path.read_bytes()
    try:
        result = prunec.prune(str(path), feeds, **kwargs)
    except prunec.TargetError as exc:
        if "target" in kwargs and any(m in str(exc) for m in ("cannot be reached", "cannot be met within")):
            return Outcome(REFUSED, str(exc), "target")
        return Outcome(FAILURE, f"TargetError: {exc}", "internal")
    except prunec.VerificationError as exc:
        return Outcome(FAILURE, str(exc), "mismatch")
    except Exception as exc:
        return Outcome(FAILURE, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=-4)}", "internal")
    try:
        return _check(path, before, feeds, result)
    except Exception as exc:
        return Outcome(FAILURE, f"checking raised {type(exc).__name__}: {exc}", "contract")


def _check(path: Path, before: bytes, feeds: dict[str, np.ndarray], result: Any) -> Outcome:
    if path.read_bytes() != before:
        return Outcome(FAILURE, "pruning changed the ONNX file", "contract")
    if result.verification is None or not result.verification.passed:
        return Outcome(FAILURE, f"verification did not pass: {result.verification}", "mismatch")
    original = onnx.load(str(path))
    if result.report.params_after != expected_params(original, result.removed):
        return Outcome(FAILURE, f"{result.report.params_after} parameters, the removed slices imply "
                                f"{expected_params(original, result.removed)}", "contract")
    if all(g.zero_invariant for g in result.removed):
        reference = zeroed(original, result.removed)
        worst = max(relative_diff(run(result.model, f), run(reference, f))
                    for f in (feeds, _fresh(feeds, 1), _fresh(feeds, 2)))
        if not worst <= 1e-4:
            return Outcome(FAILURE, f"zeroed original vs pruned in onnxruntime: {worst:.3g}", "mismatch")
    if not result.removed:
        return Outcome(PINNED, f"{len(result.analysis.groups)} groups, nothing removed")
    if result.report.params_after >= result.report.params_before:
        return Outcome(FAILURE, "channels were removed but the ONNX model is not smaller", "contract")
    return Outcome(PRUNED, f"{result.report.channels_removed} channels removed")
