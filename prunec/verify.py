"""Compare a pruned model's outputs with a reference and say exactly where they differ."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from prunec.errors import VerificationError
from prunec.inputs import ExampleInputs

DEFAULT_TOLERANCE = 1e-4
HALF_TOLERANCE = {torch.float16: 5e-3, torch.bfloat16: 2e-2}
"""Half-precision outputs round at about 1e-3 (float16) and 1e-2 (bfloat16) per op: removed and
zeroed channels sum in different orders, so 1e-4 would reject correct models."""


def default_tolerance(outputs: Any) -> float:
    """1e-4, or the rounding level of the coarsest half-precision floating output."""
    dtypes = {t.dtype for t in _flat(outputs) if isinstance(t, torch.Tensor) and t.is_floating_point()}
    return max([DEFAULT_TOLERANCE, *(HALF_TOLERANCE.get(d, DEFAULT_TOLERANCE) for d in dtypes)])


@dataclass(frozen=True)
class VerificationReport:
    """Outcome of comparing a pruned model with its reference on several inputs."""

    passed: bool
    max_relative_diff: float
    worst_output: str
    inputs_checked: int
    reference: str
    tolerance: float
    detail: str = ""

    def __str__(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        return (f"verification {verdict}: max |diff| / max |reference| = {self.max_relative_diff:.3g} "
                f"(tolerance {self.tolerance:g}) over {self.inputs_checked} inputs, worst at "
                f"{self.worst_output}; reference: {self.reference}{'; ' + self.detail if self.detail else ''}")


def _flat(out: Any) -> list[Any]:
    leaves, _ = torch.utils._pytree.tree_flatten(out)
    return leaves


def compare_outputs(pruned: Any, reference: Any) -> tuple[float, str, str]:
    """Worst relative difference over all tensor outputs: (value, which output, problem text)."""
    got, want = _flat(pruned), _flat(reference)
    if len(got) != len(want):
        return float("inf"), "output structure", f"{len(got)} outputs vs {len(want)} in the reference"
    worst, where, problem = 0.0, "-", ""
    for i, (g, w) in enumerate(zip(got, want)):
        if not isinstance(w, torch.Tensor):
            continue
        label = f"output {i} {tuple(w.shape)}"
        if not isinstance(g, torch.Tensor) or g.shape != w.shape:
            shape = tuple(g.shape) if isinstance(g, torch.Tensor) else type(g).__name__
            return float("inf"), label, f"pruned output has shape {shape}"
        gf, wf = g.detach().double(), w.detach().double()
        nan_g, nan_w = ~torch.isfinite(gf), ~torch.isfinite(wf)
        if not torch.equal(nan_g, nan_w):
            return float("inf"), label, "non-finite values differ from the reference"
        gf, wf = gf.masked_fill(nan_g, 0), wf.masked_fill(nan_w, 0)
        if w.numel() == 0:
            continue
        scale = float(wf.abs().max())
        diff = float((gf - wf).abs().max())
        rel = diff / scale if scale > 1e-12 else diff
        if rel > worst:
            worst, where = rel, label
    return worst, where, problem


def check_equivalent(pruned: Callable[..., Any], reference: Callable[..., Any],
                     inputs: Sequence[ExampleInputs], *, reference_name: str,
                     tolerance: float | None = DEFAULT_TOLERANCE) -> VerificationReport:
    """Run both on every input set; the report holds the worst relative difference.

    Modules run in eval mode (their training flags are restored afterwards): dropout would make the
    comparison random, and batch norm in training mode would update the running statistics.
    `tolerance=None` picks `default_tolerance` of the reference's outputs.
    """
    worst, where, problem = 0.0, "-", ""
    with torch.no_grad(), _eval(pruned), _eval(reference):
        for inp in inputs:
            want = reference(*inp.args, **dict(inp.kwargs))
            if tolerance is None:
                tolerance = default_tolerance(want)
            try:
                got = pruned(*inp.args, **dict(inp.kwargs))
            except Exception as exc:  # noqa: BLE001 - a pruned model that raises fails verification
                return VerificationReport(False, float("inf"), "forward", len(inputs), reference_name,
                                          tolerance, f"pruned model raised {type(exc).__name__}: "
                                                     f"{str(exc).splitlines()[0] if str(exc) else ''}")
            rel, label, text = compare_outputs(got, want)
            if rel > worst or (text and not problem):
                worst, where, problem = max(rel, worst), label, text or problem
    tol = DEFAULT_TOLERANCE if tolerance is None else tolerance
    return VerificationReport(worst <= tol, worst, where, len(inputs), reference_name, tol, problem)


@contextlib.contextmanager
def _eval(fn: Any) -> Iterator[None]:
    """Eval mode for a module (flags restored on exit); nothing for other callables."""
    if not isinstance(fn, torch.nn.Module):
        yield
        return
    flags = [(m, m.training) for m in fn.modules()]
    for m, _ in flags:
        m.training = False  # not .eval(): exported programs' modules refuse it
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def raise_if_failed(report: VerificationReport, what: str) -> None:
    """Raise VerificationError naming the worst output and difference."""
    if not report.passed:
        raise VerificationError(
            f"{what} does not match its reference: {report}. This is a prunec bug or an op whose rule "
            "is wrong; please report it with the model. Pass verify=False to get the model anyway "
            "(not recommended), or ignore= the modules around the failing output.")
