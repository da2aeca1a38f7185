"""Shared test helpers: the correctness contract, checked independently of prunec's verifier."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Any

import numpy as np
import torch
from torch import nn

import prunec
from prunec.inputs import ExampleInputs


def state_hash(model: nn.Module) -> str:
    """A hash of every state_dict entry's name, shape and bytes."""
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(str(tuple(v.shape)).encode())
        h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())  # any dtype
    return h.hexdigest()


def expected_param_count(model: nn.Module, removed: tuple[prunec.RemovedGroup, ...]) -> int:
    """Parameter count after removing exactly the slices listed in `removed` (tied counted once)."""
    drops: dict[tuple[str, int], set[int]] = defaultdict(set)
    for g in removed:
        for s in g.members:
            drops[(s.param, s.dim)].update(s.indices)
    names: dict[int, set[str]] = defaultdict(set)
    for n, p in model.named_parameters(remove_duplicate=False):
        names[id(p)].add(n)
    total = 0
    for p in model.parameters():
        shape = list(p.shape)
        for (param, dim), idx in drops.items():
            if param in names[id(p)]:
                shape[dim] -= len(idx)
        total += int(np.prod(shape))
    return total


def outputs_close(a: Any, b: Any, tol: float = 1e-4) -> float:
    """Worst relative difference over matching tensor outputs (fails on structure/shape mismatch)."""
    la, lb = torch.utils._pytree.tree_flatten(a)[0], torch.utils._pytree.tree_flatten(b)[0]
    assert len(la) == len(lb), f"{len(la)} outputs vs {len(lb)}"
    worst = 0.0
    for x, y in zip(la, lb):
        if not isinstance(y, torch.Tensor):
            continue
        assert x.shape == y.shape, f"shape {tuple(x.shape)} vs reference {tuple(y.shape)}"
        scale = float(y.abs().max()) if y.numel() else 0.0
        diff = float((x.double() - y.double()).abs().max()) if y.numel() else 0.0
        worst = max(worst, diff / scale if scale > 1e-12 else diff)
    return worst


def assert_prunes_equivalently(model: nn.Module, example: Any, *, tol: float = 1e-4,
                               expect_output: str | None = None, **prune_kwargs: Any) -> prunec.PruneResult:
    """Prune and check the contract the way an outside tool would.

    - the original model is untouched;
    - the parameter count equals the count implied by `result.removed`;
    - for zero-invariant removals: the zeroed original equals the pruned model on the example
      and on two fresh inputs of the same shapes (max relative difference <= tol);
    - prunec's own verification passed.
    """
    model.eval()
    before = state_hash(model)
    result = prunec.prune(model, example, **prune_kwargs)
    assert state_hash(model) == before, "prune() modified the original model"
    assert result.verification is not None and result.verification.passed
    assert prunec.count_params(result.model) == expected_param_count(model, result.removed)
    if expect_output is not None:
        assert result.output_kind == expect_output, result.report
    inputs = ExampleInputs.from_user(example)
    zi_only = tuple(g for g in result.removed if g.zero_invariant)
    if len(zi_only) == len(result.removed):
        ref = prunec.zeroed_copy(model, result.removed).eval()
        result.model.eval()
        with torch.no_grad():
            for inp in (inputs, inputs.randomized(11), inputs.randomized(12)):
                diff = outputs_close(inp.call(result.model), inp.call(ref))
                assert diff <= tol, f"contract broken: relative difference {diff:.3g}"
    return result


class Gate(torch.autograd.Function):
    """A user autograd.Function (x * (x > 0)): the recorder refuses it, so tracer='auto' falls back to
    torch.export, which keeps it as one op."""

    @staticmethod
    def forward(ctx, x):
        return x * (x > 0)

    @staticmethod
    def backward(ctx, g):
        return g
