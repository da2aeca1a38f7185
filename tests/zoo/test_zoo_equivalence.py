"""Every zoo model prunes at 0.3/0.5/0.7 and keeps the contract, as the same classes."""

import pytest

from prunec.zoo import ZOO
from tests.helpers import assert_prunes_equivalently


@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.7])
@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_model_prunes_equivalently(name, ratio):
    """Contract, exact parameter count, untouched original, same-class output."""
    entry = ZOO[name]
    model = entry.build()
    expect = "module" if entry.same_class else "graph_module"
    result = assert_prunes_equivalently(model, entry.example_inputs(), ratio=ratio, expect_output=expect)
    assert result.report.channels_removed > 0
    assert result.report.params_after < result.report.params_before
    if entry.same_class:  # the pruned model is a real model of the same class
        assert type(result.model) is type(model)
