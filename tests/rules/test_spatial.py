"""Rule soundness: pooling, reductions, resizing, padding, softmax and friends, embedding, attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tests.rules.harness import Case, make_tests
from tests.rules.models import Fn, Fork, Sandwich, conv_sandwich, image, linear_sandwich, tokens

C2 = (("a.weight", 0), ("b.weight", 1))


def _spatial(
    fn,
    *ops: str,
    dims: int = 2,
    side: int = 8,
    name: str = "",
    zi: bool | None = True,
    output: str = "module",
) -> Case:
    """A per-channel op over space between two convs."""
    return Case(
        name or ops[0].split("::")[1],
        lambda: conv_sandwich(Fn(lambda m, h: fn(h)), dims=dims),
        image(side=side, dims=dims),
        C2,
        ops,
        zero_invariant=zi,
        output=output,
    )


class _SE(nn.Module):
    """Squeeze-and-excitation: mean over space, two linears, a sigmoid gate back onto the channels."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(c, 3), nn.Linear(3, c)

    def forward(self, h):
        s = torch.sigmoid(self.fc2(torch.relu(self.fc1(h.mean((2, 3))))))
        return h * s[:, :, None, None]


class _Attention(nn.Module):
    """q/k/v projections, heads, scaled_dot_product_attention, merge heads, output projection."""

    def __init__(self, c: int = 8, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(6, c), nn.Linear(6, c), nn.Linear(6, c), nn.Linear(c, 5))

    def forward(self, x):
        b, t, _ = x.shape

        def split(z):
            return z.view(b, t, self.heads, -1).transpose(1, 2)

        y = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)))
        return self.o(y.transpose(1, 2).reshape(b, t, -1))


CASES = [
    # pooling: per channel over space
    _spatial(lambda h: F.max_pool1d(h, 2), "aten::max_pool1d", dims=1),
    _spatial(lambda h: F.avg_pool1d(h, 2), "aten::avg_pool1d", dims=1),
    _spatial(lambda h: F.adaptive_avg_pool1d(h, 3), "aten::adaptive_avg_pool1d", dims=1),
    _spatial(lambda h: F.adaptive_max_pool1d(h, 3), "aten::adaptive_max_pool1d", dims=1),
    _spatial(lambda h: F.max_pool2d(h, 2), "aten::max_pool2d"),
    _spatial(lambda h: F.max_pool2d(h, 2, return_indices=True)[0], "aten::max_pool2d_with_indices"),
    _spatial(lambda h: F.avg_pool2d(h, 3, 2, 1), "aten::avg_pool2d"),
    _spatial(lambda h: F.adaptive_avg_pool2d(h, 1), "aten::adaptive_avg_pool2d"),
    _spatial(lambda h: F.adaptive_max_pool2d(h, 2), "aten::adaptive_max_pool2d"),
    _spatial(lambda h: F.max_pool3d(h, 2), "aten::max_pool3d", dims=3, side=4),
    _spatial(lambda h: F.avg_pool3d(h, 2), "aten::avg_pool3d", dims=3, side=4),
    _spatial(lambda h: F.adaptive_avg_pool3d(h, 1), "aten::adaptive_avg_pool3d", dims=3, side=4),
    # reductions over space keep channels; over channels they mix them (removal reference)
    _spatial(lambda h: h.mean((2, 3), keepdim=True), "aten::mean", name="mean_spatial"),
    _spatial(lambda h: h.sum(-1, keepdim=True), "aten::sum", name="sum_spatial"),
    _spatial(lambda h: h.amax((2, 3), keepdim=True), "aten::amax"),
    _spatial(lambda h: h.max(dim=2, keepdim=True)[0], "aten::max", name="max_dim"),
    _spatial(lambda h: h.std(dim=(2, 3), keepdim=True), "aten::std"),
    _spatial(lambda h: h.var(dim=(2, 3), keepdim=True), "aten::var"),
    _spatial(lambda h: h.norm(dim=(2, 3), keepdim=True), "aten::linalg_vector_norm"),
    _spatial(lambda h: h.logsumexp(dim=(2, 3), keepdim=True), "aten::logsumexp"),
    Case(
        "squeeze_excitation",
        lambda: conv_sandwich(_SE()),
        image(),
        (("a.weight", 0), ("op.fc1.weight", 1), ("op.fc2.weight", 0), ("b.weight", 1)),
        ("aten::mean",),
    ),
    Case(
        "mean_over_channels_gate",
        lambda: conv_sandwich(Fn(lambda m, h: h * torch.sigmoid(h.mean(1, keepdim=True)))),
        image(),
        C2,
        ("aten::mean",),
        zero_invariant=False,
    ),
    Case(
        "sum_over_channels",
        lambda: Fork(
            lambda a, b: a + b.sum(1, keepdim=True),
            nn.Conv2d(3, 4, 1),
            nn.Conv2d(3, 6, 1),
            b=nn.Conv2d(4, 5, 1),
        ),
        image(),
        (("a2.weight", 0),),
        ("aten::sum",),
        zero_invariant=False,
    ),
    Case(
        "amax_over_channels_cbam",
        lambda: conv_sandwich(Fn(lambda m, h: h * torch.sigmoid(h.amax(1, keepdim=True)))),
        image(),
        C2,
        ("aten::amax",),
        zero_invariant=False,
    ),
    # resizing: per channel over space
    _spatial(lambda h: F.interpolate(h, scale_factor=2), "aten::upsample_nearest2d"),
    _spatial(lambda h: F.interpolate(h, scale_factor=2, mode="bilinear"), "aten::upsample_bilinear2d"),
    _spatial(
        lambda h: F.interpolate(h, size=(5, 5), mode="bilinear", align_corners=True),
        "aten::upsample_bilinear2d",
        name="bilinear_align_corners",
    ),
    _spatial(lambda h: F.interpolate(h, scale_factor=2, mode="bicubic"), "aten::upsample_bicubic2d"),
    _spatial(
        lambda h: F.interpolate(h, scale_factor=2, mode="nearest-exact"), "aten::_upsample_nearest_exact2d"
    ),
    _spatial(
        lambda h: F.interpolate(h, scale_factor=0.5, mode="bilinear", antialias=True),
        "aten::_upsample_bilinear2d_aa",
    ),
    _spatial(lambda h: F.interpolate(h, size=(3, 3), mode="area"), "aten::adaptive_avg_pool2d", name="area"),
    _spatial(lambda h: F.interpolate(h, scale_factor=2, mode="linear"), "aten::upsample_linear1d", dims=1),
    _spatial(lambda h: F.interpolate(h, scale_factor=2), "aten::upsample_nearest1d", dims=1),
    _spatial(
        lambda h: F.interpolate(h, scale_factor=2, mode="trilinear"),
        "aten::upsample_trilinear3d",
        dims=3,
        side=3,
    ),
    _spatial(lambda h: F.interpolate(h, scale_factor=2), "aten::upsample_nearest3d", dims=3, side=3),
    # padding: space, or channels (padded channels hold a constant and go with the consumer's columns)
    _spatial(lambda h: F.pad(h, (1, 2, 0, 1)), "aten::pad", name="pad_constant_spatial"),
    _spatial(lambda h: F.pad(h, (1, 1, 1, 1), mode="reflect"), "aten::pad", name="pad_reflect"),
    _spatial(lambda h: F.pad(h, (1, 1, 1, 1), mode="replicate"), "aten::pad", name="pad_replicate"),
    _spatial(lambda h: F.pad(h, (1, 1, 1, 1), mode="circular"), "aten::pad", name="pad_circular"),
    _spatial(lambda h: F.pad(h, (2, 1)), "aten::pad", dims=1, name="pad_1d"),
    _spatial(lambda h: F.pad(h, (-1, -1, -1, -1)), "aten::pad", name="pad_negative_crop"),
    Case(
        "pad_channels",
        lambda: conv_sandwich(Fn(lambda m, h: F.pad(h, (0, 0, 0, 0, 1, 2), value=0.5)), out=11),
        image(),
        C2,
        ("aten::pad",),
        output="either",
    ),
    # per-channel ops along a spatial axis (that axis stays whole)
    _spatial(lambda h: h.flatten(2).softmax(-1).view_as(h), "aten::softmax", name="softmax_spatial"),
    _spatial(lambda h: h.log_softmax(-1), "aten::log_softmax"),
    _spatial(lambda h: h.cumsum(2), "aten::cumsum"),
    _spatial(lambda h: h.flip(3), "aten::flip"),
    _spatial(lambda h: h.roll(1, 2), "aten::roll"),
    _spatial(lambda h: h.sort(dim=2)[0], "aten::sort"),
    _spatial(lambda h: h.topk(3, dim=3)[0], "aten::topk"),
    _spatial(lambda h: h.cummax(2)[0], "aten::cummax"),
    _spatial(lambda h: torch.tril(h), "aten::tril"),
    _spatial(lambda h: torch.triu(h, 1), "aten::triu"),
    # tensors made from constants (a position ramp) broadcast onto the channels without coupling them
    _spatial(
        lambda h: h + torch.arange(h.shape[-1], dtype=h.dtype) * 0.1, "aten::arange", name="arange_ramp"
    ),
    _spatial(lambda h: h * torch.ones(h.shape[-2], h.shape[-1]), "aten::ones", name="ones_mask"),
    # dropout in eval mode is the identity
    Case("dropout_module", lambda: conv_sandwich(nn.Dropout(0.5)), image(), C2, ("aten::dropout",)),
    Case(
        "dropout2d_module", lambda: conv_sandwich(nn.Dropout2d(0.5)), image(), C2, ("aten::feature_dropout",)
    ),
    Case(
        "alpha_dropout_module",
        lambda: conv_sandwich(nn.AlphaDropout(0.5)),
        image(),
        C2,
        ("aten::alpha_dropout",),
    ),
    # embedding columns are channels; the vocabulary is not
    Case(
        "embedding",
        lambda: Sandwich(nn.Embedding(10, 8), nn.GELU(), nn.Linear(8, 5)),
        lambda: torch.randint(0, 10, (2, 5)),
        (("a.weight", 1), ("b.weight", 1)),
        ("aten::embedding",),
    ),
    Case(
        "embedding_bias_add",
        lambda: Fork(lambda e, f: e + f, nn.Embedding(10, 8), nn.Embedding(10, 8), b=nn.Linear(8, 5)),
        lambda: torch.randint(0, 10, (2, 5)),
        (("a1.weight", 1), ("a2.weight", 1), ("b.weight", 1)),
        ("aten::embedding",),
    ),
    # attention: whole heads go together (q, k, v rows and the output projection's columns)
    Case(
        "sdpa_heads",
        lambda: _Attention(),
        tokens(),
        (("q.weight", 0), ("k.weight", 0), ("v.weight", 0), ("o.weight", 1)),
        ("aten::scaled_dot_product_attention",),
        output="either",
    ),
    Case(
        "softmax_attention_matmul",
        lambda: linear_sandwich(Fn(lambda m, h: torch.softmax(h @ h.transpose(1, 2), -1) @ h)),
        tokens(),
        C2,
        ("aten::matmul", "aten::softmax"),
        zero_invariant=False,
    ),
]

test_random_removal_keeps_contract, test_prune_half_keeps_contract = make_tests(CASES, examples=3)
