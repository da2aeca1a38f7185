"""Coverage sweep over timm CNN constructors (one or two per family), random weights.

    python bench/coverage_timm.py                        # every model below, one subprocess each
    python bench/coverage_timm.py --only 'resnet|ghost'

Same table as bench/coverage_torchvision.py: pruned ok / output kind / pinned reasons / error, at
ratio 0.5 with the contract checked eagerly (zeroed original == pruned) for zero-invariant removals.
Models with a fixed input size get it; the others a 64x64 image (96 where the stem needs more).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _coverage import Builder, child_main, sweep

MODELS = [
    # residual families
    "resnet10t",
    "resnet18",
    "resnet18d",
    "resnet26d",
    "resnet50d",
    "resnetrs50",
    "resnetv2_50",
    "wide_resnet50_2",
    "resnext26ts",
    "seresnet18",
    "seresnext26d_32x4d",
    "legacy_seresnet18",
    "ecaresnet26t",
    "ecaresnet50t",
    "skresnet18",
    "skresnext50_32x4d",
    "resnest14d",
    "res2net50_14w_8s",
    "gcresnet33ts",
    "bat_resnext26ts",
    "tresnet_m",
    "nf_resnet26",
    "dm_nfnet_f0",
    "eca_nfnet_l0",
    "regnetx_002",
    "regnety_002",
    "regnetz_b16",
    "regnetv_040",
    # mobile / efficient families
    "efficientnet_b0",
    "efficientnet_lite0",
    "efficientnetv2_rw_t",
    "tf_efficientnetv2_b0",
    "mobilenetv2_050",
    "mobilenetv3_small_050",
    "mobilenetv3_large_100",
    "mobilenetv4_conv_small",
    "ghostnet_050",
    "ghostnetv2_100",
    "ghostnetv3_050",
    "repghostnet_050",
    "rexnet_100",
    "rexnetr_100",
    "mnasnet_050",
    "semnasnet_050",
    "spnasnet_100",
    "fbnetc_100",
    "hardcorenas_a",
    "lcnet_035",
    "lcnet_050",
    "tinynet_e",
    "mixnet_s",
    "tf_mixnet_s",
    "mobileone_s0",
    "repvit_m0_9",
    "fasternet_t0",
    "starnet_s1",
    "efficientvit_b0",
    # multi-branch, dense, dual-path, aggregation
    "densenet121",
    "dpn48b",
    "dla34",
    "dla46_c",
    "dla60x_c",
    "hrnet_w18_small",
    "hrnet_w18_small_v2",
    "inception_v3",
    "inception_v4",
    "xception41",
    "nasnetalarge",
    "pnasnet5large",
    "selecsls42",
    "selecsls42b",
    "vovnet39a",
    "ese_vovnet19b_dw",
    "cspresnet50",
    "cspdarknet53",
    "cs3darknet_s",
    "darknet17",
    # plain and re-parameterizable
    "vgg11_bn",
    "repvgg_a0",
    "gernet_s",
    # modern convnets and conv/attention hybrids
    "convnext_atto",
    "convnextv2_atto",
    "inception_next_atto",
    "poolformer_s12",
    "convmixer_768_32",
    "rdnet_tiny",
    "hgnet_tiny",
    "hgnetv2_b0",
    "edgenext_xx_small",
    "fastvit_t8",
    "mobilevit_xxs",
    "mobilevitv2_050",
    "mambaout_femto",
    "halonet26t",
    "lambda_resnet26t",
    "botnet26t_256",
    "sebotnet33ts_256",
]
MIN_SIDE = {
    "inception_v3": 96,
    "inception_v4": 96,
    "nasnetalarge": 96,
    "pnasnet5large": 96,
    "xception41": 96,
    "tresnet_m": 96,
    "hrnet_w18_small": 96,
    "hrnet_w18_small_v2": 96,
    "halonet26t": 256,
    "lambda_resnet26t": 256,
    "bat_resnext26ts": 256,
}  # attention blocks need their trained size


def builder(name: str) -> Builder:
    """Model with random weights (no download) and a small example image at its input size."""

    def build():
        import timm
        import torch

        model = timm.create_model(name, pretrained=False)
        cfg = getattr(model, "pretrained_cfg", {}) or {}
        side = cfg["input_size"][-1] if cfg.get("fixed_input_size") else MIN_SIDE.get(name, 64)
        return model, torch.randn(1, 3, side, side)

    return build


if __name__ == "__main__":
    if not child_main(builder):
        sweep("timm CNN constructors, ratio 0.5", MODELS, os.path.abspath(__file__))
