"""Registering passes, criteria and op rules: what is accepted, and every clash and misuse."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

import prunec
from prunec import Artifact, Criterion, Pass, PassResult, register_criterion, register_pass
from prunec.pipeline import PASSES
from prunec.rules import RULES, RuleRegistry, couple
from prunec.scoring import CRITERIA


def _identity_rule(node):
    x, y = node.input(0), node.output(0)
    return [couple(x.axis(k), y.axis(k)) for k in range(x.rank)]


def test_second_rule_for_an_op_is_an_error_naming_both() -> None:
    """A second rule for the same op key raises RuleConflictError with both definitions' file:line."""
    prunec.op_rule("mylib::twice")(_identity_rule)

    def other(node):
        return []

    with pytest.raises(prunec.RuleConflictError,
                       match=r"op 'mylib::twice' already has a rule from .*test_registry.py:\d+; the new one "
                             r"is from .*test_registry.py:\d+\. Pass override=True to replace it on purpose"):
        prunec.op_rule("mylib::twice")(other)
    assert RULES.get("mylib::twice").rule is _identity_rule


def test_override_replaces_a_rule() -> None:
    """override=True replaces the rule on purpose."""
    prunec.op_rule("mylib::twice")(_identity_rule)

    def other(node):
        return []

    prunec.op_rule("mylib::twice", override=True)(other)
    assert RULES.get("mylib::twice").rule is other


def test_builtin_rule_clash_names_the_builtin() -> None:
    """Clashing with a built-in rule names prunec's file in readable form."""
    with pytest.raises(prunec.RuleConflictError, match=r"op 'aten::relu' already has a rule from "
                                                       r"built-in prunec/rules/torch_ops.py:\d+"):
        prunec.op_rule("aten.relu")(_identity_rule)


def test_clash_on_any_key_registers_nothing() -> None:
    """A multi-key registration that clashes on one key leaves the other keys unregistered."""
    with pytest.raises(prunec.RuleConflictError):
        prunec.op_rule("mylib::fresh", "aten::relu")(_identity_rule)
    assert "mylib::fresh" not in RULES


def test_op_rule_accepts_torch_objects() -> None:
    """torch.library ops, their overloads and autograd.Function classes map to their keys."""
    @torch.library.custom_op("prunec_test::keyed", mutates_args=())
    def keyed(x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    class Fn(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x

    reg = RuleRegistry()
    prunec.op_rule(keyed, registry=reg)(_identity_rule)
    prunec.op_rule(Fn, registry=reg)(_identity_rule)
    assert [e.key for e in reg] == [f"autograd::{__name__}.test_op_rule_accepts_torch_objects.<locals>.Fn",
                                    "prunec_test::keyed"]
    assert torch.ops.prunec_test.keyed in reg and torch.ops.prunec_test.keyed.default in reg


def test_op_rule_rejects_non_ops() -> None:
    """Something that is no op name nor op object is a PluginError saying what is accepted."""
    with pytest.raises(prunec.PluginError, match=r"cannot use 42 as an op key; pass a name such as "
                                                 r"'mylib::fused_op', a torch.library op"):
        prunec.op_rule(42)(_identity_rule)


@dataclass(frozen=True)
class _Noop(Pass):
    requires: ClassVar = frozenset({Artifact.ANALYSIS})

    def run(self, state):
        return PassResult(state, changed=False)


def test_pass_name_clash_names_both_sources() -> None:
    """Two passes under one name: RuleConflictError with both classes and files."""
    register_pass("noop")(_Noop)

    @dataclass(frozen=True)
    class Other(_Noop):
        pass

    with pytest.raises(prunec.RuleConflictError,
                       match=r"pass name 'noop' is already taken by pass _Noop from .*test_registry.py:\d+; "
                             r"the new pass .*Other is from .*test_registry.py:\d+\. Pick another name or "
                             r"pass override=True"):
        register_pass("noop")(Other)
    register_pass("noop", override=True)(Other)
    assert PASSES["noop"].cls is Other


def test_pass_may_not_take_a_criterion_name() -> None:
    """Passes and criteria share the pipeline namespace; override cannot cross it."""
    with pytest.raises(prunec.RuleConflictError,
                       match=r"pass name 'l2' is already taken by criterion L2 from built-in "
                             r"prunec/passes/criteria/magnitude.py:\d+; .* Pick another name\.$"):
        register_pass("l2", override=True)(_Noop)


def test_criterion_clash_names_both_sources() -> None:
    """Two criteria under one name, and a criterion taking a pass name, are both errors."""
    @dataclass(frozen=True)
    class Ones(Criterion):
        def score_slice(self, data):
            return torch.ones(data.weight.shape[0])

    with pytest.raises(prunec.RuleConflictError,
                       match=r"criterion name 'l1' is already taken by criterion L1"):
        register_criterion("l1")(Ones)
    with pytest.raises(prunec.RuleConflictError, match=r"criterion name 'verify' is already taken by pass "
                                                       r"VerifyPass"):
        register_criterion("verify")(Ones)
    register_criterion("l1", override=True)(Ones)
    assert CRITERIA["l1"].cls is Ones


@pytest.mark.parametrize("name", ["Select", "select_uniform", "-x", "", "a--b", 3])
def test_bad_names_are_rejected(name) -> None:
    """Names must be kebab-case strings."""
    with pytest.raises(prunec.PluginError, match=r"names are kebab-case strings such as 'select-global'"):
        register_pass(name)(_Noop)


def test_register_pass_needs_a_frozen_dataclass_pass() -> None:
    """Non-Pass classes, non-dataclasses and mutable dataclasses are refused with the fix."""
    with pytest.raises(prunec.PluginError,
                       match=r"@register_pass\('x'\) must decorate a subclass of prunec.Pass"):
        register_pass("x")(int)

    class Plain(_Noop.__mro__[1]):  # a Pass subclass that is not a dataclass
        def run(self, state):
            return PassResult(state)

    with pytest.raises(prunec.PluginError, match=r"pass .*Plain \('x'\) must be a frozen dataclass: its "
                                                 r"fields are its options. Write @register_pass\(...\) above "
                                                 r"@dataclass\(frozen=True\)"):
        register_pass("x")(Plain)

    @dataclass
    class Mutable(Pass):
        def run(self, state):
            return PassResult(state)

    with pytest.raises(prunec.PluginError, match="must be a frozen dataclass"):
        register_pass("x")(Mutable)


def test_register_pass_checks_artifact_declarations() -> None:
    """requires/provides must be frozensets of Artifact, not strings."""
    @dataclass(frozen=True)
    class Stringly(Pass):
        requires: ClassVar = frozenset({"scores"})

        def run(self, state):
            return PassResult(state)

    with pytest.raises(prunec.PluginError, match=r"declares requires = frozenset\(\{'scores'\}\); it must be "
                                                 r"a frozenset of prunec.Artifact"):
        register_pass("stringly")(Stringly)


def test_register_criterion_needs_a_criterion() -> None:
    """Only Criterion subclasses can be registered as criteria."""
    with pytest.raises(prunec.PluginError, match=r"@register_criterion\('c'\) must decorate a subclass of "
                                                 r"prunec.Criterion"):
        register_criterion("c")(_Noop)
