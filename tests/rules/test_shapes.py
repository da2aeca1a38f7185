"""Rule soundness: concatenation, splitting, slicing, indexing, reshapes, permutations, repeats."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tests.rules.harness import Case, make_tests
from tests.rules.models import Fn, Fork, Sandwich, conv_sandwich, image, linear_sandwich, tokens


def _conv(cin: int, cout: int, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, groups=groups)


class _SplitByWidth(nn.Module):
    """split into the widths the two consumers read (sizes follow the consumers after pruning)."""

    def __init__(self, hard_coded: bool) -> None:
        super().__init__()
        self.a, self.b1, self.b2 = _conv(3, 8), _conv(3, 4), _conv(5, 4)
        self.hard_coded = hard_coded

    def forward(self, x):
        sizes = [3, 5] if self.hard_coded else [self.b1.in_channels, self.b2.in_channels]
        h1, h2 = torch.split(self.a(x), sizes, dim=1)
        return self.b1(h1) + self.b2(h2)


class _ShuffleNetUnit(nn.Module):
    """grouped conv -> channel shuffle (view, transpose, view, or nn.ChannelShuffle) -> grouped conv."""

    def __init__(self, native: bool) -> None:
        super().__init__()
        self.a, self.g1, self.g2, self.b = _conv(3, 8), _conv(8, 8, 2), _conv(8, 8, 2), _conv(8, 5)
        self.shuffle = nn.ChannelShuffle(2) if native else None

    def forward(self, x):
        h = self.g1(self.a(x))
        h = self.shuffle(h) if self.shuffle is not None else _shuffle(h, 2)
        return self.b(self.g2(h))


class _Heads(nn.Module):
    """(B, T, C) -> (B, T, heads, C/heads) -> per-head op -> back: channels follow the heads."""

    def __init__(self, unflatten: bool) -> None:
        super().__init__()
        self.unflatten = unflatten
        self.scale = nn.Parameter(torch.rand(2, 1) + 0.5)

    def forward(self, h):
        b, t, c = h.shape
        g = h.unflatten(-1, (2, c // 2)) if self.unflatten else h.reshape(b, t, 2, c // 2)
        return (g * self.scale).flatten(-2)


def _shuffle(h: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, hh, ww = h.shape
    return h.view(n, groups, c // groups, hh, ww).transpose(1, 2).contiguous().view(n, c, hh, ww)


def _gather_max(h: torch.Tensor) -> torch.Tensor:
    return torch.gather(h, 2, h.argmax(dim=2, keepdim=True))


CASES = [
    # concatenation: part j's channel c is channel offset_j + c of the result
    Case(
        "cat_channels",
        lambda: Fork(lambda a, b: torch.cat([a, b], 1), _conv(3, 5), _conv(3, 3), b=_conv(8, 5)),
        image(),
        (("a1.weight", 0), ("a2.weight", 0), ("b.weight", 1)),
        ("aten::cat",),
    ),
    Case(
        "cat_class_token",
        lambda: linear_sandwich(
            Fn(lambda m, h: torch.cat([m.cls.expand(h.shape[0], -1, -1), h], 1), cls=torch.randn(1, 1, 8))
        ),
        tokens(),
        (("a.weight", 0), ("op.cls", 2), ("b.weight", 1)),
        ("aten::cat", "aten::expand"),
    ),
    Case(
        "stack",
        lambda: Fork(lambda a, b: torch.stack([a, b], 1).sum(1), _conv(3, 6), _conv(3, 6), b=_conv(6, 5)),
        image(),
        (("a1.weight", 0), ("a2.weight", 0), ("b.weight", 1)),
        ("aten::stack",),
    ),
    # splitting and slicing: parts are offsets into the whole; unread channels are free
    Case(
        "split_by_consumer_width",
        lambda: _SplitByWidth(False),
        image(),
        (("a.weight", 0), ("b1.weight", 1), ("b2.weight", 1)),
        ("aten::split_with_sizes",),
    ),
    Case(
        "split_hard_coded",
        lambda: _SplitByWidth(True),
        image(),
        (("a.weight", 0), ("b1.weight", 1), ("b2.weight", 1)),
        ("aten::split_with_sizes",),
        output="either",
    ),
    Case(
        "split_equal",
        lambda: conv_sandwich(Fn(lambda m, h: torch.split(h, 4, 1)[0] * torch.split(h, 4, 1)[1]), out=4),
        image(),
        (("a.weight", 0), ("b.weight", 1)),
        ("aten::split",),
        output="either",
    ),
    Case(
        "chunk_gate",
        lambda: conv_sandwich(Fn(lambda m, h: h.chunk(2, 1)[0] * torch.sigmoid(h.chunk(2, 1)[1])), out=4),
        image(),
        (("a.weight", 0), ("b.weight", 1)),
        ("aten::chunk",),
    ),
    Case(
        "tensor_split_even",
        lambda: conv_sandwich(
            Fn(lambda m, h: torch.tensor_split(h, 2, 1)[0] - torch.tensor_split(h, 2, 1)[1]), out=4
        ),
        image(),
        (("a.weight", 0), ("b.weight", 1)),
        ("aten::tensor_split",),
    ),
    Case(
        "slice_to_consumer_width",
        lambda: _SliceHead(),
        image(),
        (("a.weight", 0), ("b.weight", 1)),
        ("aten::slice",),
    ),
    Case(
        "slice_tokens",
        lambda: linear_sandwich(Fn(lambda m, h: h[:, 1:])),
        tokens(),
        (("a.weight", 0), ("b.weight", 1)),
        ("aten::slice",),
    ),
    Case(
        "narrow",
        lambda: conv_sandwich(Fn(lambda m, h: h.narrow(1, 2, 4)), out=4),
        image(),
        (("a.weight", 0), ("b.weight", 1)),
        ("aten::narrow",),
        output="either",
    ),
    Case(
        "select_gate",
        lambda: conv_sandwich(Fn(lambda m, h: h[:, 1:] * h.select(1, 0).unsqueeze(1)), out=7),
        image(),
        (("a.weight", 0), ("b.weight", 1)),
        ("aten::select", "aten::unsqueeze"),
    ),
    Case(
        "unbind_stack",
        lambda: conv_sandwich(Fn(lambda m, h: torch.stack(h.unbind(2), 2))),
        image(),
        (("a.weight", 0), ("b.weight", 1)),
        ("aten::unbind", "aten::stack"),
    ),
    # indexing along non-channel axes: channels pass through
    Case(
        "index_spatial",
        lambda: conv_sandwich(_Indexed()),
        image(),
        (("a.weight", 0), ("b.weight", 1)),
        ("aten::index",),
    ),
    Case(
        "index_select_spatial",
        lambda: conv_sandwich(Fn(lambda m, h: h.index_select(3, torch.tensor([0, 3, 5])))),
        image(),
        (("a.weight", 0), ("b.weight", 1)),
        ("aten::index_select",),
    ),
    Case(
        "gather_argmax",
        lambda: conv_sandwich(Fn(lambda m, h: _gather_max(h))),
        image(),
        (("a.weight", 0), ("b.weight", 1)),
        ("aten::gather", "aten::argmax"),
    ),
    # reshapes and permutations
    Case(
        "view_roundtrip",
        lambda: conv_sandwich(Fn(lambda m, h: h.view(h.shape[0], h.shape[1], -1).view(h.shape))),
        image(),
        (("a.weight", 0), ("b.weight", 1)),
        ("aten::view",),
    ),
    Case(
        "flatten_spatial_mean",
        lambda: Sandwich(_conv(3, 8), Fn(lambda m, h: h.flatten(2).mean(-1)), nn.Linear(8, 5)),
        image(),
        (("a.weight", 0), ("b.weight", 1)),
        ("aten::flatten", "aten::mean"),
    ),
    Case(
        "reshape_heads",
        lambda: linear_sandwich(_Heads(False)),
        tokens(),
        (("a.weight", 0), ("op.scale", 0), ("b.weight", 1)),
        ("aten::reshape",),
    ),
    Case(
        "unflatten_heads",
        lambda: linear_sandwich(_Heads(True)),
        tokens(),
        (("a.weight", 0), ("op.scale", 0), ("b.weight", 1)),
        ("aten::unflatten", "aten::flatten"),
    ),
    Case(
        "permute_channels_last",
        lambda: Sandwich(_conv(3, 8), Fn(lambda m, h: h.permute(0, 2, 3, 1)), nn.Linear(8, 5)),
        image(),
        (("a.weight", 0), ("b.weight", 1)),
        ("aten::permute",),
    ),
    Case(
        "transpose_tokens_to_conv1d",
        lambda: Sandwich(nn.Linear(6, 8), Fn(lambda m, h: h.transpose(1, 2)), nn.Conv1d(8, 5, 1)),
        tokens(),
        (("a.weight", 0), ("b.weight", 1)),
        ("aten::transpose",),
    ),
    Case(
        "movedim",
        lambda: Sandwich(_conv(3, 8), Fn(lambda m, h: h.movedim(1, -1)), nn.Linear(8, 5)),
        image(),
        (("a.weight", 0), ("b.weight", 1)),
        ("aten::movedim",),
    ),
    Case(
        "swapaxes",
        lambda: Sandwich(_conv(3, 8), Fn(lambda m, h: h.swapaxes(1, 3)), nn.Linear(8, 5)),
        image(),
        (("a.weight", 0), ("b.weight", 1)),
        ("aten::swapaxes",),
    ),
    Case(
        "matrix_transpose",
        lambda: linear_sandwich(Fn(lambda m, h: (m.w @ h.t()).t(), w=torch.randn(7, 8)), out=7),
        lambda: torch.randn(3, 6),
        (("a.weight", 0), ("op.w", 1)),
        ("aten::t",),
    ),
    Case(
        "channel_shuffle_view_transpose",
        lambda: _ShuffleNetUnit(False),
        image(),
        (("g1.weight", 0), ("g2.weight", 1)),
        ("aten::transpose",),
    ),
    Case(
        "channel_shuffle_native",
        lambda: _ShuffleNetUnit(True),
        image(),
        (("g1.weight", 0), ("g2.weight", 1)),
        ("aten::channel_shuffle",),
    ),
    Case(
        "channel_shuffle_between_dense",
        lambda: conv_sandwich(nn.ChannelShuffle(2)),
        image(),
        (("a.weight", 0), ("b.weight", 1)),
        ("aten::channel_shuffle",),
    ),
    Case(
        "view_transpose_shuffle_between_dense",
        lambda: conv_sandwich(Fn(lambda m, h: _shuffle(h, 2))),
        image(),
        (("a.weight", 0), ("b.weight", 1)),
        ("aten::transpose", "aten::view"),
    ),
    # repeats and broadcasts
    Case(
        "repeat",
        lambda: conv_sandwich(Fn(lambda m, h: h.repeat(1, 2, 1, 1)), out=16),
        image(),
        (("a.weight", 0), ("b.weight", 1)),
        ("aten::repeat",),
    ),
    Case(
        "repeat_interleave",
        lambda: conv_sandwich(Fn(lambda m, h: h.repeat_interleave(2, dim=1)), out=16),
        image(),
        (("a.weight", 0), ("b.weight", 1)),
        ("aten::repeat_interleave",),
    ),
    Case(
        "expand_parameter",
        lambda: conv_sandwich(
            Fn(lambda m, h: h + m.p.expand(h.shape[0], -1, h.shape[2], -1), p=torch.randn(1, 8, 1, 8))
        ),
        image(),
        (("a.weight", 0), ("op.p", 1), ("b.weight", 1)),
        ("aten::expand",),
    ),
    Case(
        "expand_gate_to_channels",
        lambda: Fork(
            lambda a, g: a * torch.sigmoid(g).expand(-1, a.shape[1], -1, -1),
            _conv(3, 8),
            _conv(3, 1),
            b=_conv(8, 5),
        ),
        image(),
        (("a1.weight", 0), ("b.weight", 1)),
        ("aten::expand",),
    ),
    Case(
        "broadcast_to",
        lambda: conv_sandwich(Fn(lambda m, h: h * torch.broadcast_to(m.s, h.shape), s=torch.rand(8, 1, 1))),
        image(),
        (("a.weight", 0), ("op.s", 0), ("b.weight", 1)),
        ("aten::broadcast_to",),
    ),
    Case(
        "type_as",
        lambda: conv_sandwich(Fn(lambda m, h: h * m.s.double().type_as(h), s=torch.rand(8, 1, 1))),
        image(),
        (("a.weight", 0), ("op.s", 0), ("b.weight", 1)),
        ("aten::type_as",),
    ),
    # channel <-> space rearrangements
    Case(
        "pixel_shuffle",
        lambda: conv_sandwich(nn.PixelShuffle(2), out=2),
        image(),
        (("a.weight", 0), ("b.weight", 1)),
        ("aten::pixel_shuffle",),
    ),
    Case(
        "pixel_unshuffle",
        lambda: conv_sandwich(nn.PixelUnshuffle(2), c=3, out=12),
        image(),
        (("a.weight", 0), ("b.weight", 1)),
        ("aten::pixel_unshuffle",),
    ),
    Case(
        "im2col",
        lambda: Sandwich(_conv(3, 4), Fn(lambda m, h: F.unfold(h, 2, stride=2)), nn.Conv1d(16, 5, 1)),
        image(),
        (("a.weight", 0), ("b.weight", 1)),
        ("aten::im2col",),
    ),
    Case(
        "col2im",
        lambda: Sandwich(nn.Conv1d(3, 16, 1), Fn(lambda m, h: F.fold(h, (8, 8), 2, stride=2)), _conv(4, 5)),
        lambda: torch.randn(2, 3, 16),
        (("a.weight", 0), ("b.weight", 1)),
        ("aten::col2im",),
    ),
    Case(
        "tensor_unfold",
        lambda: conv_sandwich(Fn(lambda m, h: h.unfold(2, 2, 2).mean(-1))),
        image(),
        (("a.weight", 0), ("b.weight", 1)),
        ("aten::unfold",),
    ),
    Case(
        "glu",
        lambda: conv_sandwich(nn.GLU(1), out=4),
        image(),
        (("a.weight", 0), ("b.weight", 1)),
        ("aten::glu",),
    ),
    Case(
        "prelu",
        lambda: conv_sandwich(nn.PReLU(8)),
        image(),
        (("a.weight", 0), ("op.weight", 0), ("b.weight", 1)),
        ("aten::prelu",),
    ),
]


class _Indexed(nn.Module):
    """h[:, :, idx] with a constant index buffer on a spatial axis."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("idx", torch.tensor([0, 2, 5, 7]))

    def forward(self, h):
        return h[:, :, self.idx]


class _SliceHead(nn.Module):
    """GhostNet's tail: keep the first channels the consumer reads; the rest are computed, never read."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = _conv(3, 8), _conv(5, 5)

    def forward(self, x):
        return self.b(self.a(x)[:, : self.b.in_channels])


test_random_removal_keeps_contract, test_prune_half_keeps_contract = make_tests(CASES, examples=4)
