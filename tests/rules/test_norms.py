"""Rule soundness: batch, instance, group and layer norms (affine parameters and running stats)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from tests.rules.harness import Case, make_tests
from tests.rules.models import Sandwich, conv_sandwich, image, linear_sandwich, tokens, vectors

CASES = [
    # per-channel affine maps: weight, bias and both running stats go with the producing filter
    Case(
        "batch_norm1d",
        lambda: linear_sandwich(nn.BatchNorm1d(8)),
        vectors(),
        (
            ("a.weight", 0),
            ("op.weight", 0),
            ("op.bias", 0),
            ("op.running_mean", 0),
            ("op.running_var", 0),
            ("b.weight", 1),
        ),
        ("aten::batch_norm",),
    ),
    Case(
        "batch_norm1d_sequence",
        lambda: Sandwich(nn.Conv1d(3, 8, 1), nn.BatchNorm1d(8), nn.Conv1d(8, 2, 1)),
        image(dims=1),
        (("a.weight", 0), ("op.running_var", 0), ("b.weight", 1)),
        ("aten::batch_norm",),
    ),
    Case(
        "batch_norm2d",
        lambda: conv_sandwich(nn.BatchNorm2d(8)),
        image(),
        (("a.weight", 0), ("op.weight", 0), ("op.running_mean", 0), ("b.weight", 1)),
        ("aten::batch_norm",),
    ),
    Case(
        "batch_norm2d_no_affine",
        lambda: conv_sandwich(nn.BatchNorm2d(8, affine=False)),
        image(),
        (("a.weight", 0), ("op.running_mean", 0), ("op.running_var", 0), ("b.weight", 1)),
        ("aten::batch_norm",),
    ),
    Case(
        "batch_norm3d",
        lambda: conv_sandwich(nn.BatchNorm3d(8), dims=3),
        image(side=4, dims=3),
        (("a.weight", 0), ("op.weight", 0), ("b.weight", 1)),
        ("aten::batch_norm",),
    ),
    # instance norm: statistics per sample and channel, so channels stay independent
    Case(
        "instance_norm2d_affine",
        lambda: conv_sandwich(nn.InstanceNorm2d(8, affine=True)),
        image(),
        (("a.weight", 0), ("op.weight", 0), ("op.bias", 0), ("b.weight", 1)),
        ("aten::instance_norm",),
    ),
    Case(
        "instance_norm2d_running",
        lambda: conv_sandwich(nn.InstanceNorm2d(8, affine=True, track_running_stats=True)),
        image(),
        (("a.weight", 0), ("op.running_mean", 0), ("b.weight", 1)),
        ("aten::instance_norm",),
    ),
    Case(
        "instance_norm1d",
        lambda: Sandwich(nn.Conv1d(3, 8, 1), nn.InstanceNorm1d(8, affine=True), nn.Conv1d(8, 2, 1)),
        image(dims=1),
        (("a.weight", 0), ("op.weight", 0), ("b.weight", 1)),
        ("aten::instance_norm",),
    ),
    # group norm: statistics per group of channels, so whole groups are removed
    Case(
        "group_norm",
        lambda: conv_sandwich(nn.GroupNorm(4, 16), c=16),
        image(),
        (("a.weight", 0), ("op.weight", 0), ("op.bias", 0), ("b.weight", 1)),
        ("aten::group_norm",),
    ),
    Case(
        "group_norm_one_channel_groups",
        lambda: conv_sandwich(nn.GroupNorm(8, 8)),
        image(),
        (("a.weight", 0), ("op.weight", 0), ("b.weight", 1)),
        ("aten::group_norm",),
    ),
    Case(
        "group_norm_single_group",
        lambda: conv_sandwich(nn.GroupNorm(1, 8)),
        image(),
        (("a.weight", 0), ("op.weight", 0), ("b.weight", 1)),
        ("aten::group_norm",),
        zero_invariant=False,
    ),
    # layer norm over features: statistics mix every channel (checked against the removal reference)
    Case(
        "layer_norm_features",
        lambda: linear_sandwich(nn.LayerNorm(8)),
        tokens(),
        (("a.weight", 0), ("op.weight", 0), ("op.bias", 0), ("b.weight", 1)),
        ("aten::layer_norm",),
        zero_invariant=False,
    ),
    Case(
        "layer_norm_no_affine",
        lambda: linear_sandwich(nn.LayerNorm(8, elementwise_affine=False)),
        tokens(),
        (("a.weight", 0), ("b.weight", 1)),
        ("aten::layer_norm",),
        zero_invariant=False,
    ),
    Case(
        "layer_norm_channels_last",
        lambda: conv_sandwich(_ChannelsLastLN(8)),
        image(),
        (("a.weight", 0), ("op.ln.weight", 0), ("b.weight", 1)),
        ("aten::layer_norm", "aten::permute"),
        zero_invariant=False,
    ),
    # batch statistics over a weight: the conv's input channels are mixed by the standardization
    Case(
        "batch_norm_weight_standardization",
        lambda: conv_sandwich(_WSConv2d(8, 6, 3, padding=1), out=6),
        image(),
        (("a.weight", 0), ("op.weight", 1), ("a.bias", 0)),
        ("aten::batch_norm", "aten::conv2d"),
        output="either",
        zero_invariant=False,
    ),
    Case(
        "rms_norm",
        lambda: linear_sandwich(nn.RMSNorm(8)),
        tokens(),
        (("a.weight", 0), ("op.weight", 0), ("b.weight", 1)),
        ("aten::rms_norm",),
        zero_invariant=False,
    ),
]


class _WSConv2d(nn.Conv2d):
    """NFNet's weight-standardized conv (timm ScaledStdConv2d): each filter is normalized by a
    batch-norm call with batch statistics over its input channels and taps."""

    def forward(self, h):
        w = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None, training=True, eps=1e-5)
        return F.conv2d(h, w.reshape_as(self.weight), self.bias, padding=1)


class _ChannelsLastLN(nn.Module):
    """ConvNeXt's LayerNorm: permute to channels-last, normalize, permute back."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(c)

    def forward(self, h):
        return self.ln(h.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


test_random_removal_keeps_contract, test_prune_half_keeps_contract = make_tests(CASES, examples=4)
