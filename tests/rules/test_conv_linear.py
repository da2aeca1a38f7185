"""Rule soundness: convolutions (dense, grouped, depthwise, transposed; 1-3 d) and matrix products."""

from __future__ import annotations

import torch
from torch import nn

from tests.rules.harness import Case, make_tests
from tests.rules.models import Fn, Sandwich, image, linear_sandwich, tokens, vectors


def _chain(*mods: nn.Module) -> nn.Sequential:
    return nn.Sequential(*mods)


CASES = [
    # dense convs: filter c of conv 0 feeds input column c of conv 2
    Case(
        "conv1d",
        lambda: _chain(nn.Conv1d(3, 8, 3), nn.ReLU(), nn.Conv1d(8, 5, 3)),
        image(dims=1),
        (("0.weight", 0), ("0.bias", 0), ("2.weight", 1)),
        ("aten::conv1d",),
    ),
    Case(
        "conv2d",
        lambda: _chain(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 5, 3)),
        image(),
        (("0.weight", 0), ("0.bias", 0), ("2.weight", 1)),
        ("aten::conv2d",),
    ),
    Case(
        "conv3d",
        lambda: _chain(nn.Conv3d(3, 6, 3), nn.ReLU(), nn.Conv3d(6, 4, 1)),
        image(side=5, dims=3),
        (("0.weight", 0), ("2.weight", 1)),
        ("aten::conv3d",),
    ),
    Case(
        "conv2d_strided_dilated",
        lambda: _chain(
            nn.Conv2d(3, 8, 3, stride=2, dilation=2, padding=2), nn.Conv2d(8, 5, 3, padding=1, bias=False)
        ),
        image(side=9),
        (("0.weight", 0), ("1.weight", 1)),
        ("aten::conv2d",),
    ),
    # grouped: the same positions in every group go together, so the conv stays grouped
    Case(
        "conv2d_grouped_in",
        lambda: _chain(nn.Conv2d(3, 8, 1), nn.Conv2d(8, 6, 3, groups=2)),
        image(),
        (("0.weight", 0), ("1.weight", 1)),
        ("aten::conv2d",),
    ),
    Case(
        "conv2d_grouped_out",
        lambda: _chain(nn.Conv2d(4, 8, 3, groups=2), nn.Conv2d(8, 5, 1)),
        image(c=4),
        (("0.weight", 0), ("0.bias", 0), ("1.weight", 1)),
        ("aten::conv2d",),
    ),
    Case(
        "conv1d_grouped",
        lambda: _chain(nn.Conv1d(3, 12, 1), nn.Conv1d(12, 9, 3, groups=3), nn.Conv1d(9, 2, 1)),
        image(dims=1),
        (("0.weight", 0), ("1.weight", 1)),
        ("aten::conv1d",),
    ),
    # depthwise: one input channel and its filters are one unit; multiplier 2 couples 1 -> 2 channels
    Case(
        "conv2d_depthwise",
        lambda: _chain(nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 3, groups=8), nn.Conv2d(8, 5, 1)),
        image(),
        (("0.weight", 0), ("1.weight", 0), ("1.bias", 0), ("2.weight", 1)),
        ("aten::conv2d",),
    ),
    Case(
        "conv2d_depthwise_multiplier",
        lambda: _chain(nn.Conv2d(3, 6, 1), nn.Conv2d(6, 12, 3, groups=6), nn.Conv2d(12, 5, 1)),
        image(),
        (("0.weight", 0), ("1.weight", 0), ("2.weight", 1)),
        ("aten::conv2d",),
    ),
    Case(
        "conv3d_depthwise",
        lambda: _chain(nn.Conv3d(3, 6, 1), nn.Conv3d(6, 6, 3, groups=6), nn.Conv3d(6, 2, 1)),
        image(side=4, dims=3),
        (("0.weight", 0), ("1.weight", 0), ("2.weight", 1)),
        ("aten::conv3d",),
    ),
    # transposed: weight is (in, out/groups, k...)
    Case(
        "conv_transpose1d",
        lambda: _chain(nn.Conv1d(3, 8, 1), nn.ConvTranspose1d(8, 6, 3, stride=2), nn.Conv1d(6, 2, 1)),
        image(dims=1),
        (("0.weight", 0), ("1.weight", 0)),
        ("aten::conv_transpose1d",),
    ),
    Case(
        "conv_transpose2d_out",
        lambda: _chain(nn.Conv2d(3, 8, 1), nn.ConvTranspose2d(8, 6, 2, stride=2), nn.Conv2d(6, 2, 1)),
        image(),
        (("1.weight", 1), ("1.bias", 0), ("2.weight", 1)),
        ("aten::conv_transpose2d",),
    ),
    Case(
        "conv_transpose3d",
        lambda: _chain(nn.Conv3d(3, 4, 1), nn.ConvTranspose3d(4, 6, 2, stride=2), nn.Conv3d(6, 2, 1)),
        image(side=3, dims=3),
        (("0.weight", 0), ("1.weight", 0)),
        ("aten::conv_transpose3d",),
    ),
    Case(
        "conv_transpose2d_grouped",
        lambda: _chain(nn.Conv2d(3, 8, 1), nn.ConvTranspose2d(8, 6, 3, groups=2), nn.Conv2d(6, 2, 1)),
        image(),
        (("0.weight", 0), ("1.weight", 0)),
        ("aten::conv_transpose2d",),
    ),
    Case(
        "conv_transpose2d_depthwise",
        lambda: _chain(nn.Conv2d(3, 6, 1), nn.ConvTranspose2d(6, 6, 3, groups=6), nn.Conv2d(6, 2, 1)),
        image(),
        (("0.weight", 0), ("1.weight", 0), ("1.bias", 0), ("2.weight", 1)),
        ("aten::conv_transpose2d",),
    ),
    # linear and its matrix-product spellings (a parameter operand absorbs the removed columns)
    Case(
        "linear",
        lambda: _chain(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 5)),
        vectors(),
        (("0.weight", 0), ("0.bias", 0), ("2.weight", 1)),
        ("aten::linear",),
    ),
    Case(
        "linear_3d_input",
        lambda: _chain(nn.Linear(6, 8), nn.GELU(), nn.Linear(8, 5)),
        tokens(),
        (("0.weight", 0), ("2.weight", 1)),
        ("aten::linear",),
    ),
    Case(
        "addmm",
        lambda: linear_sandwich(
            Fn(lambda m, h: torch.addmm(m.b, h, m.w.t()), w=torch.randn(7, 8), b=torch.randn(7)), out=7
        ),
        vectors(),
        (("a.weight", 0), ("op.w", 1)),
        ("aten::addmm",),
    ),
    Case(
        "addmm_out",
        lambda: linear_sandwich(
            Fn(lambda m, h: torch.addmm(m.b, h, m.w.t()), w=torch.randn(7, 8), b=torch.randn(7)), out=7
        ),
        vectors(),
        (("op.w", 0), ("op.b", 0), ("b.weight", 1)),
        ("aten::addmm",),
    ),
    Case(
        "mm",
        lambda: linear_sandwich(Fn(lambda m, h: torch.mm(h, m.w), w=torch.randn(8, 7)), out=7),
        vectors(),
        (("a.weight", 0), ("op.w", 0)),
        ("aten::mm",),
    ),
    Case(
        "mm_out",
        lambda: linear_sandwich(Fn(lambda m, h: torch.mm(h, m.w), w=torch.randn(8, 7)), out=7),
        vectors(),
        (("op.w", 1), ("b.weight", 1)),
        ("aten::mm",),
    ),
    Case(
        "matmul_3d",
        lambda: linear_sandwich(Fn(lambda m, h: h @ m.w, w=torch.randn(8, 7)), out=7),
        tokens(),
        (("a.weight", 0), ("op.w", 0)),
        ("aten::matmul",),
    ),
    Case(
        "matmul_param_left",
        lambda: Sandwich(
            nn.Conv1d(3, 8, 1), Fn(lambda m, h: m.w @ h, w=torch.randn(7, 8)), nn.Conv1d(7, 2, 1)
        ),
        image(dims=1),
        (("a.weight", 0), ("op.w", 1)),
        ("aten::matmul",),
    ),
    Case(
        "bmm",
        lambda: linear_sandwich(Fn(lambda m, h: torch.bmm(h, m.w), w=torch.randn(2, 8, 7)), out=7),
        tokens(),
        (("a.weight", 0), ("op.w", 1)),
        ("aten::bmm",),
    ),
    Case(
        "bmm_out",
        lambda: linear_sandwich(Fn(lambda m, h: torch.bmm(h, m.w), w=torch.randn(2, 8, 7)), out=7),
        tokens(),
        (("op.w", 2), ("b.weight", 1)),
        ("aten::bmm",),
    ),
    Case(
        "einsum",
        lambda: linear_sandwich(
            Fn(lambda m, h: torch.einsum("bti,oi->bto", h, m.w), w=torch.randn(7, 8)), out=7
        ),
        tokens(),
        (("a.weight", 0), ("op.w", 1)),
        ("aten::einsum",),
    ),
    Case(
        "einsum_out",
        lambda: linear_sandwich(
            Fn(lambda m, h: torch.einsum("bti,oi->bto", h, m.w), w=torch.randn(7, 8)), out=7
        ),
        tokens(),
        (("op.w", 0), ("b.weight", 1)),
        ("aten::einsum",),
    ),
    Case(
        "conv_then_flatten_linear",
        lambda: Sandwich(nn.Conv2d(3, 4, 3, stride=2), lambda h: h.flatten(1), nn.Linear(4 * 9, 5)),
        image(side=7),
        (("a.weight", 0), ("b.weight", 1)),
        ("aten::flatten",),
    ),
]

test_random_removal_keeps_contract, test_prune_half_keeps_contract = make_tests(CASES, examples=4)
