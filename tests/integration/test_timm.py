"""timm CNN constructors (random weights, small inputs) prune at ratio 0.5 with the contract holding.

One small model per structural family for CI; `bench/coverage_timm.py` sweeps ~100 constructors.
"""

from __future__ import annotations

import pytest
import torch
from prunec.zoo import randomize_norms

from tests.helpers import assert_prunes_equivalently

timm = pytest.importorskip("timm")

# name -> output kind: cs3darknet splits at fixed widths (timm fixers resize them) and rexnet slices
# its residual at a stored width, so the same-class module follows only for some removals (None:
# either kind)
MODELS: dict[str, str | None] = {
    "resnet10t": "module",  # deep stem, residual basic blocks
    "mobilenetv3_small_050": "module",  # squeeze-excitation, hard-swish, depthwise
    "ghostnet_050": "module",  # concat-then-slice ghost modules
    "convnext_atto": "module",  # channels-last LayerNorm, layer scale
    "regnetx_002": "module",  # group-width convolutions
    "lcnet_035": "module",  # depthwise-separable with SE
    "dla46_c": "module",  # deep layer aggregation (tree of concats)
    "rexnet_100": None,  # residuals onto a channel subset
    "ese_vovnet19b_dw": "module",  # one-shot aggregation with effective SE
    "cs3darknet_s": None,  # cross-stage partial splits
}


@pytest.mark.parametrize("name", list(MODELS))
def test_timm_model_prunes_with_the_contract(name):
    """Ratio 0.5 removes channels, shrinks parameters and keeps the contract."""
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=10).eval()
    randomize_norms(model, seed=1)  # default BN stats (0/1) would hide mis-sliced running stats
    result = assert_prunes_equivalently(
        model, torch.randn(1, 3, 32, 32), ratio=0.5, expect_output=MODELS[name]
    )
    assert result.report.params_after < 0.6 * result.report.params_before, result.report
    assert not result.analysis.pinned, [str(p) for p in result.analysis.pinned]
