"""Rule soundness harness: one op between parameterised producers and consumers, random removals.

A `Case` is a tiny module in which the op under test reads channels made by a parameterised layer
and feeds them to another. `check_random_removal` removes a hypothesis-drawn subset of every
group's channels, rewrites a copy of the module, and checks the contract: the zeroed original (or,
for groups whose channels an op mixes, prunec's removal reference) computes what the pruned module
computes. `check_couples` proves the op passed channels on instead of pinning them: the given
parameter axes end up in one group with prunable channels.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st
from prunec.zoo import randomize_norms
from torch import nn

import prunec
from prunec.inputs import ExampleInputs
from prunec.reference import traced_reference
from prunec.rewrite import rewrite_graph_module, rewrite_module
from prunec.selection import keep_every_member


@dataclass(frozen=True)
class Case:
    """A tiny model around one op, and the parameter axes the op must couple."""

    name: str
    build: Callable[[], nn.Module]
    inputs: Callable[[], Any]
    couples: tuple[tuple[str, int], ...]
    """(state_dict name, dim) pairs that must fall in one group through the op under test."""
    ops: tuple[str, ...] = ()
    """Op keys the traced graph must contain (proves the case exercises the rule it names)."""
    output: str = "module"
    """'module' when the module's own code follows the new sizes; 'graph_module' when it hard-codes
    sizes; 'either' when that depends on which channels go (random removals use the GraphModule)."""
    zero_invariant: bool | None = True
    """Expected zero-invariance of the coupled group (None: not asserted)."""
    tol: float = 1e-4
    tracer: str = "auto"
    """How random removals trace the case ('export' exercises the torch.export frontend's ops)."""

    def __str__(self) -> str:
        return self.name


_CACHE: dict[str, tuple[nn.Module, ExampleInputs, prunec.Analysis]] = {}


def analysed(case: Case) -> tuple[nn.Module, ExampleInputs, prunec.Analysis]:
    """The case's model, inputs and analysis (built once per test session)."""
    if case.name not in _CACHE:
        torch.manual_seed(0)
        model = case.build().eval()
        randomize_norms(model, seed=1)
        inputs = ExampleInputs.from_user(case.inputs())
        _CACHE[case.name] = (model, inputs, prunec.analyze(model, inputs, tracer=case.tracer))
    return _CACHE[case.name]


def group_of(analysis: prunec.Analysis, param: str, dim: int) -> prunec.Group:
    """The group holding slices of (param, dim); fails when that axis is in no group."""
    for g in analysis.groups:
        if any(m.param == param and m.dim == dim for m in g.members):
            return g
    pinned = [str(p) for p in analysis.pinned_params if p.param == param and p.dim == dim]
    raise AssertionError(
        f"{param}[{dim}] is in no group (pinned: {pinned or 'no reason recorded'})\n{analysis}"
    )


def check_couples(case: Case) -> prunec.Group:
    """The op passed channels on: every (param, dim) of `case.couples` is in one prunable group."""
    _, _, analysis = analysed(case)
    present = {op.op for op in analysis.graph.ops()}
    missing = [op for op in case.ops if op not in present]
    assert not missing, f"traced graph lacks {missing}; it has {sorted(present)}"
    groups = {group_of(analysis, p, d).id for p, d in case.couples}
    assert len(groups) == 1, f"{case.couples} fell into groups {sorted(groups)}\n{analysis}"
    g = group_of(analysis, *case.couples[0])
    assert g.channel_count >= 2, f"group {g.name} has {g.channel_count} channel(s)"
    if case.zero_invariant is not None:
        assert g.zero_invariant == case.zero_invariant, f"group {g.name}: zero_invariant={g.zero_invariant}"
    return g


def removal_strategy(analysis: prunec.Analysis) -> st.SearchStrategy[dict[int, tuple[int, ...]]]:
    """Random channel subsets per group, never emptying any member of a group."""

    def one(g: prunec.Group) -> st.SearchStrategy[tuple[int, tuple[int, ...]]]:
        chans = st.sets(st.integers(0, g.channel_count - 1), max_size=g.channel_count - 1)
        scores = np.ones(g.channel_count)
        return chans.map(lambda s: (g.id, tuple(keep_every_member(g, sorted(s), scores))))

    return st.tuples(*(one(g) for g in analysis.groups)).map(dict)


def check_removal(case: Case, masks: dict[int, tuple[int, ...]]) -> float:
    """Remove `masks` from a copy of the model; assert and return the worst difference to the reference."""
    model, inputs, analysis = analysed(case)
    keep = analysis.keep_mask(masks)
    removed = [analysis.group(gid).select(ch) for gid, ch in masks.items() if ch]
    if case.output == "module":
        pruned: Any = copy.deepcopy(model)
        rewrite_module(pruned, analysis, keep)
    else:
        pruned = rewrite_graph_module(analysis, keep)
    if all(r.zero_invariant for r in removed):
        reference: Any = prunec.zeroed_copy(model, removed).eval()
    else:
        reference = traced_reference(analysis, keep, removed)[0]
    worst = 0.0
    with torch.no_grad():
        for inp in (inputs, inputs.randomized(3), inputs.randomized(4)):
            worst = max(worst, relative_difference(inp.call(pruned), inp.call(reference)))
    assert worst <= case.tol, f"removing {masks}: relative difference {worst:.3g}"
    return worst


def relative_difference(got: Any, want: Any) -> float:
    """Worst max|got - want| / max|want| over tensor outputs.

    Infinite when shapes or structure differ or any value is not finite (a sound case has finite
    outputs, and NaN never compares as close).
    """
    la, lb = torch.utils._pytree.tree_flatten(got)[0], torch.utils._pytree.tree_flatten(want)[0]
    if len(la) != len(lb):
        return float("inf")
    worst = 0.0
    for a, b in zip(la, lb, strict=True):
        if not isinstance(b, torch.Tensor):
            continue
        if not isinstance(a, torch.Tensor) or a.shape != b.shape:
            return float("inf")
        a, b = a.double(), b.double()
        if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
            return float("inf")
        if b.numel() == 0:
            continue
        scale = float(b.abs().max())
        diff = float((a - b).abs().max())
        worst = max(worst, diff / scale if scale > 1e-12 else diff)
    return worst


def check_prune_half(case: Case) -> prunec.PruneResult:
    """The one-call API at ratio 0.5 keeps the contract and shrinks the coupled parameters."""
    from tests.helpers import assert_prunes_equivalently

    model, inputs, _ = analysed(case)
    expect = None if case.output == "either" else case.output
    result = assert_prunes_equivalently(copy.deepcopy(model), inputs, ratio=0.5, expect_output=expect)
    target = group_of(result.analysis, *case.couples[0])
    removed = [r for r in result.removed if r.group_id == target.id]
    assert removed and removed[0].channels, f"ratio 0.5 removed nothing from group {target.name}"
    return result


def ids(cases: Sequence[Case]) -> list[str]:
    """Test ids."""
    return [c.name for c in cases]


def one_per_rule(cases: Sequence[Case]) -> list[Case]:
    """The first case of each (rule function, output kind, zero-invariance): ops sharing a family rule
    take the same prune() path, which their random-removal cases already check op by op."""
    from prunec.api import _load_builtins
    from prunec.rules import RULES

    _load_builtins()
    chosen: dict[tuple[Any, ...], Case] = {}
    for case in cases:
        entry = RULES.get(case.ops[0]) if case.ops else None
        key = (id(entry.rule) if entry else case.name, case.output, case.zero_invariant)
        chosen.setdefault(key, case)
    return list(chosen.values())


def make_tests(cases: Sequence[Case], examples: int = 6, prune_half: Sequence[Case] | None = None
               ) -> tuple[Callable[..., None], Callable[..., None]]:
    """The two tests every case file runs: random removals (hypothesis) and ratio 0.5 via prune()
    (on `prune_half`, default every case)."""
    import pytest
    from hypothesis import HealthCheck, given, settings

    @pytest.mark.parametrize("case", cases, ids=ids(cases))
    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(data=st.data())
    def test_random_removal_keeps_contract(case: Case, data: st.DataObject) -> None:
        """The op couples its channels, and removing any subset equals zeroing it."""
        check_couples(case)
        _, _, analysis = analysed(case)
        check_removal(case, data.draw(removal_strategy(analysis)))

    half = list(cases if prune_half is None else prune_half)

    @pytest.mark.parametrize("case", half, ids=ids(half))
    def test_prune_half_keeps_contract(case: Case) -> None:
        """prune(ratio=0.5) shrinks the coupled parameters and keeps the contract."""
        check_prune_half(case)

    return test_random_removal_keeps_contract, test_prune_half_keeps_contract
