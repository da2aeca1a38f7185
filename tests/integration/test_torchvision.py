"""torchvision models (random weights, small inputs) prune at ratio 0.5 with the contract holding.

A representative subset for CI: the real constructors of the small CNNs and segmentation models,
and reduced configurations of the big families through torchvision's own classes (the same code
at a fraction of the width and depth). `bench/coverage_torchvision.py` sweeps every model.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from prunec.zoo import randomize_norms

from tests.helpers import assert_prunes_equivalently

torchvision = pytest.importorskip("torchvision")
tvm = torchvision.models


def _vit() -> torch.nn.Module:
    return tvm.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=10
    )


def _swin(v2: bool) -> torch.nn.Module:
    from torchvision.models.swin_transformer import PatchMergingV2, SwinTransformerBlockV2

    extra = {"block": SwinTransformerBlockV2, "downsample_layer": PatchMergingV2} if v2 else {}
    return tvm.SwinTransformer(
        patch_size=[4, 4],
        embed_dim=16,
        depths=[1, 1],
        num_heads=[1, 2],
        window_size=[4, 4],
        num_classes=10,
        **extra,
    )


def _maxvit() -> torch.nn.Module:
    return tvm.MaxVit(
        input_size=(32, 32),
        stem_channels=8,
        partition_size=2,
        block_channels=[16, 32],
        block_layers=[1, 1],
        head_dim=8,
        stochastic_depth_prob=0.0,
        num_classes=10,
    )


def _convnext() -> torch.nn.Module:
    from torchvision.models.convnext import CNBlockConfig

    return tvm.convnext.ConvNeXt([CNBlockConfig(16, 32, 1), CNBlockConfig(32, None, 1)], num_classes=10)


def _segmentation(name: str) -> Callable[[], torch.nn.Module]:
    return lambda: tvm.get_model(name, weights=None, weights_backbone=None, num_classes=3)


# name -> (builder, input side, expected output kind or None when module fixers may still change it)
MODELS: dict[str, tuple[Callable[[], torch.nn.Module], int, str | None]] = {
    "resnet18": (lambda: tvm.resnet18(num_classes=10), 32, "module"),
    "mobilenet_v3_small": (lambda: tvm.mobilenet_v3_small(num_classes=10), 32, "module"),
    "shufflenet_v2_x0_5": (lambda: tvm.shufflenet_v2_x0_5(num_classes=10), 32, "module"),
    "squeezenet1_1": (lambda: tvm.squeezenet1_1(num_classes=10), 48, "module"),
    "regnet_x_400mf": (lambda: tvm.regnet_x_400mf(num_classes=10), 32, "module"),
    "mnasnet0_5": (lambda: tvm.mnasnet0_5(num_classes=10), 32, "module"),
    "efficientnet_b0": (lambda: tvm.efficientnet_b0(num_classes=10), 32, "module"),
    "googlenet": (lambda: tvm.googlenet(num_classes=10, aux_logits=False, init_weights=False), 32, "module"),
    "densenet_small": (
        lambda: tvm.DenseNet(growth_rate=8, block_config=(2, 2), num_init_features=16, num_classes=10),
        32,
        "module",
    ),
    "convnext_small_config": (_convnext, 32, "module"),
    "vit_small_config": (_vit, 32, None),
    "swin_small_config": (lambda: _swin(False), 32, None),
    "swin_v2_small_config": (lambda: _swin(True), 32, None),
    "maxvit_small_config": (_maxvit, 32, None),
    "lraspp_mobilenet_v3_large": (_segmentation("lraspp_mobilenet_v3_large"), 32, "module"),
    "deeplabv3_mobilenet_v3_large": (_segmentation("deeplabv3_mobilenet_v3_large"), 32, "module"),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_torchvision_model_prunes_with_the_contract(name):
    """Ratio 0.5 removes channels, shrinks parameters, keeps the contract and the original intact."""
    build, side, output = MODELS[name]
    torch.manual_seed(0)
    model = build().eval()
    randomize_norms(model, seed=1)  # default BN stats (0/1) would hide mis-sliced running stats
    result = assert_prunes_equivalently(model, torch.randn(1, 3, side, side), ratio=0.5, expect_output=output)
    assert result.report.params_after < 0.6 * result.report.params_before, result.report
    assert not result.analysis.pinned, [str(p) for p in result.analysis.pinned]
