"""Coverage sweep over torchvision: every classification and segmentation model, random weights.

    python bench/coverage_torchvision.py                  # all 86 models, one subprocess each
    python bench/coverage_torchvision.py --only 'resnet|vgg'

Prints one row per model (pruned ok / output kind / pinned reasons / error) and the share that
pruned at ratio 0.5 with the contract holding (zeroed original == pruned, checked eagerly here for
zero-invariant removals; prunec's removal reference otherwise).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _coverage import Builder, child_main, sweep

# models whose code needs a fixed or minimum input size
INPUT_SIZE = {"vit_": 224, "maxvit_t": 224, "inception_v3": 96}
SEGMENTATION = ("deeplabv3_mobilenet_v3_large", "deeplabv3_resnet101", "deeplabv3_resnet50", "fcn_resnet101",
                "fcn_resnet50", "lraspp_mobilenet_v3_large")


def input_size(name: str) -> int:
    """Side of the square input image for `name`."""
    return next((s for prefix, s in INPUT_SIZE.items() if name.startswith(prefix)), 64)


def builder(name: str) -> Builder:
    """Model with random weights (no download) and a small example batch."""
    def build():
        import torch
        import torchvision

        if name in SEGMENTATION:
            model = torchvision.models.get_model(name, weights=None, weights_backbone=None)
        else:
            model = torchvision.models.get_model(name, weights=None)
        side = input_size(name)
        return model, torch.randn(1, 3, side, side)
    return build


def model_names() -> list[str]:
    """Every classification model torchvision registers, then the segmentation ones."""
    import torchvision.models as tvm

    return list(tvm.list_models(module=tvm)) + list(tvm.list_models(module=tvm.segmentation))


if __name__ == "__main__":
    if not child_main(builder):
        sweep("torchvision classification + segmentation, ratio 0.5", model_names(), os.path.abspath(__file__))
