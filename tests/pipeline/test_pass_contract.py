"""Pass.__call__ and PassManager enforce the declared contract, and say who broke it and how."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
from prunec.passes import RewriteModulePass, SelectUniformPass, VerifyPass

import prunec
from prunec import Artifact, Pass, PassManager, PassResult, PruneState, register_pass
from prunec.inputs import ExampleInputs


def state_of(tiny) -> PruneState:
    """A fresh state holding a copy of the tiny model and its analysis."""
    model, x, analysis = tiny
    return PruneState(model=copy.deepcopy(model), inputs=ExampleInputs.from_user(x), analysis=analysis)


@dataclass(frozen=True)
class Halve(Pass):
    """Remove the first half of every group's channels (an unregistered test pass)."""

    requires: ClassVar = frozenset({Artifact.ANALYSIS})
    provides: ClassVar = frozenset({Artifact.MASKS})

    def run(self, state: PruneState) -> PassResult:
        return PassResult(state.replace(masks={g.id: tuple(range(g.channel_count // 2))
                                               for g in state.analysis.groups}))


def test_manual_chain_prunes_and_records_history(tiny) -> None:
    """A Python-list pipeline with a custom pass prunes the tiny model and verifies it."""
    final = PassManager([Halve(), RewriteModulePass(), VerifyPass()]).run(state_of(tiny))
    assert final.history == ("Halve", "rewrite-module", "verify")
    assert final.pruned.a.weight.shape == (4, 3, 3, 3) and final.pruned.b.weight.shape == (3, 4, 1, 1)
    assert final.verification.passed and final.verification.max_relative_diff <= 1e-4


def test_order_error_names_pass_predecessors_and_providers() -> None:
    """A pass whose requirement nobody provides is named with the passes before it and a fix."""
    manager = PassManager([Halve(), VerifyPass()])
    with pytest.raises(prunec.PassOrderError,
                       match=r"pass 'verify' requires 'pruned', which no earlier pass provides \(passes "
                             r"before it: \['Halve'\]\); add a pass such as 'rewrite-graph-module', "
                             r"'rewrite-module' before it"):
        manager.check(frozenset({Artifact.MODEL, Artifact.ANALYSIS}))


def test_order_error_is_raised_before_tracing(tiny) -> None:
    """prune() checks the chain before it traces the model (an untraceable model is never reached)."""
    _, x, _ = tiny
    with pytest.raises(prunec.PassOrderError, match=r"pass 'select-uniform' requires 'scores', which no earlier "
                                                    r"pass provides \(passes before it: \[\]\); add a pass "
                                                    r"such as 'activation', 'bn-scale', 'hessian' before it"):
        prunec.prune(object(), x, pipeline="select-uniform{ratio=0.5},rewrite-module")  # type: ignore[arg-type]


def test_manager_rejects_non_pass_items() -> None:
    """A list pipeline item that is not a Pass is named with its position."""
    with pytest.raises(prunec.PassError, match=r"pipeline item 1 is 'verify' \(str\), not a Pass"):
        PassManager([Halve(), "verify"])  # type: ignore[list-item]


def test_wrong_return_type_is_a_postcondition_error(tiny) -> None:
    """Returning a PruneState instead of a PassResult tells the pass developer what to write."""
    @dataclass(frozen=True)
    class Sloppy(Pass):
        def run(self, state):
            return state

    with pytest.raises(prunec.PostconditionError, match=r"pass 'Sloppy' returned PruneState; a pass must "
                                                         r"return PassResult\(state, changed\)"):
        Sloppy()(state_of(tiny))


def test_missing_promised_artifact_is_a_postcondition_error(tiny) -> None:
    """A pass that promises masks but sets none is caught right after it runs."""
    @dataclass(frozen=True)
    class Forgetful(Pass):
        provides: ClassVar = frozenset({Artifact.MASKS})

        def run(self, state):
            return PassResult(state)

    with pytest.raises(prunec.PostconditionError, match=r"pass 'Forgetful' promised masks but its result "
                                                         r"has none"):
        Forgetful()(state_of(tiny))


def test_undeclared_replacement_is_a_postcondition_error(tiny) -> None:
    """A pass may not replace an artifact it does not declare in provides or modifies."""
    @dataclass(frozen=True)
    class Meddler(Pass):
        provides: ClassVar = frozenset({Artifact.MASKS})

        def run(self, state):
            return PassResult(state.replace(masks={}, scores={0: np.ones(8)}))

    with pytest.raises(prunec.PostconditionError, match=r"pass 'Meddler' replaced scores without declaring "
                                                         r"it in `provides` or `modifies` \(it declares "
                                                         r"\['masks'\]\)"):
        Meddler()(state_of(tiny))


def test_declared_modification_is_allowed(tiny) -> None:
    """Listing an artifact in `modifies` allows replacing it without providing it."""
    @dataclass(frozen=True)
    class Rescore(Pass):
        requires: ClassVar = frozenset({Artifact.SCORES})
        modifies: ClassVar = frozenset({Artifact.SCORES})

        def run(self, state):
            return PassResult(state.replace(scores={k: -v for k, v in state.scores.items()}))

    state = state_of(tiny).replace(scores={0: np.arange(8.0)})
    out = Rescore()(state).state
    assert out.scores[0].tolist() == [-float(i) for i in range(8)]


def test_foreign_exception_names_pass_and_history(tiny) -> None:
    """A crash inside run() becomes a PassError naming the pass and the passes before it."""
    @dataclass(frozen=True)
    class Crashing(Pass):
        def run(self, state):
            raise KeyError("layer9")

    state = state_of(tiny).replace(history=("l2", "select-uniform"))
    with pytest.raises(prunec.PassError, match=r"pass 'Crashing' failed after \['l2', 'select-uniform'\]: "
                                               r"KeyError: 'layer9'"):
        PassManager([Crashing()]).run(state)


def test_prune_errors_pass_through_unwrapped(tiny) -> None:
    """A prunec error raised by a pass keeps its class and message (no double wrapping)."""
    state = state_of(tiny).replace(scores={0: np.ones(8), 1: np.ones(6)})
    with pytest.raises(prunec.TargetError, match="select-uniform needs a ratio or a target"):
        SelectUniformPass()(state)


def test_registered_pass_runs_in_textual_pipeline(tiny) -> None:
    """A pass registered by decorator is usable by name with typed options in prune()."""
    @register_pass("drop-first")
    @dataclass(frozen=True)
    class DropFirst(Pass):
        requires: ClassVar = frozenset({Artifact.ANALYSIS})
        provides: ClassVar = frozenset({Artifact.MASKS})
        count: int = 1

        def run(self, state):
            masks = {g.id: tuple(range(self.count)) for g in state.analysis.groups}
            return PassResult(state.replace(masks=masks))

    model, x, _ = tiny
    result = prunec.prune(model, x, pipeline="drop-first{count=3},rewrite-module,verify")
    assert result.model.a.weight.shape[0] == 5 and result.model.b.weight.shape[0] == 3
    assert [r.channels for r in result.removed] == [(0, 1, 2), (0, 1, 2)]


def test_score_pass_with_unknown_criterion_fails_when_built() -> None:
    """score{criterion=...} with an unknown criterion fails at parse time, naming the closest one."""
    from prunec.pipeline import parse_pipeline

    with pytest.raises(prunec.PruneError,
                       match=r"unknown criterion 'magnitud' \(did you mean 'magnitude'\?\)"):
        parse_pipeline("score{criterion=magnitud},select-uniform")
