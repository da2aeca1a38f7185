"""The rule table is covered: every registered rule function is exercised by a soundness case."""

from __future__ import annotations

from collections import defaultdict

from prunec.rules import RULES
from tests.rules import test_conv_linear, test_elementwise, test_norms, test_shapes, test_spatial
from tests.rules.harness import analysed

ALL_CASES = [
    *test_conv_linear.CASES,
    *test_norms.CASES,
    *test_elementwise.CASES,
    *test_shapes.CASES,
    *test_spatial.CASES,
]


def test_every_rule_function_is_exercised():
    """Each distinct rule in the ATen table runs in at least one case whose contract is checked."""
    seen = {op.op for case in ALL_CASES for op in analysed(case)[2].graph.ops()}
    by_rule: dict[int, list[str]] = defaultdict(list)
    for entry in RULES:
        if entry.key.startswith("aten::"):
            by_rule[id(entry.rule)].append(entry.key)
    missing = [keys for keys in by_rule.values() if not seen.intersection(keys)]
    assert not missing, f"rules without a soundness case (op keys): {missing}"


def test_case_names_are_unique():
    """Case names key the analysis cache, so two cases must never share one."""
    names = [c.name for c in ALL_CASES]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
