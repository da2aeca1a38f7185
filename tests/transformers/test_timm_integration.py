"""timm vision transformers and token mixers from small configs: pruned with no sizes or fix-ups."""

import pytest
import torch

pytest.importorskip("timm")

from prunec.zoo.external import TIMM_CASES

from tests.helpers import assert_prunes_equivalently

GRAPH_MODULE = {"coat": "split_with_sizes"}
"""Models whose own code cannot hold the pruned sizes (CoaT splits its conv position encoding by a
per-head size list): prunec returns the verified GraphModule and says why."""


@pytest.mark.parametrize("name", sorted(TIMM_CASES))
def test_timm_model_prunes(name):
    """Every kind at 0.5: verified, same output shape, parameters drop; own class unless noted."""
    model, x = TIMM_CASES[name].build()
    with torch.no_grad():
        want = model(x).shape
    expect = "graph_module" if name in GRAPH_MODULE else "module"
    result = assert_prunes_equivalently(model, x, ratio=0.5, expect_output=expect)
    assert result.report.params_ratio < 0.45
    with torch.no_grad():
        assert result.model(x).shape == want
    if name in GRAPH_MODULE:
        assert any(GRAPH_MODULE[name] in n for n in result.report.notes)
    else:
        assert type(result.model) is type(model)
