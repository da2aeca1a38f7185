"""A grammar of random but valid architectures, drawn as plain JSON-able specs.

A spec is a dict: the input (image, token ids or a float sequence), a list of blocks (each a dict
with an "op" key, possibly nesting more blocks), a head, and the pruning settings. `generate` draws
one from a `Choices` source; the same code runs on `random.Random` (bench/fuzz.py, replayable from
a seed) and on hypothesis draws (tests/fuzz/test_fuzz.py, which shrinks a failure to a small spec).
Every spec can be printed as JSON and rebuilt with `tests.fuzz.build.build`.

Shapes are tracked while drawing, so every block fits its input: the generator only produces
models that run. Sizes stay small (channels <= 24, spatial <= 8) so a case prunes in well under a
second on two cores.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
Spec = dict[str, Any]

ACTS = ("relu", "gelu", "silu", "hardswish", "tanh", "prelu", None)
IMAGE_NORMS = ("bn", "gn", "in", "in_affine", "ln_cl", "rms_cl", "ln_chw", "gn1", None)


class Choices(Protocol):
    """Where random decisions come from."""

    def integer(self, lo: int, hi: int) -> int:
        """An integer in [lo, hi]."""

    def pick(self, options: Sequence[T]) -> T:
        """One of `options` (earlier ones are simpler: hypothesis shrinks towards them)."""

    def coin(self, p: float = 0.5) -> bool:
        """True with probability about `p` (shrinks towards False)."""


class RandomChoices:
    """Choices from a seeded `random.Random` (reproducible from the seed)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def pick(self, options: Sequence[T]) -> T:
        return options[self.rng.randrange(len(options))]

    def coin(self, p: float = 0.5) -> bool:
        return self.rng.random() < p


def divisors(n: int) -> list[int]:
    """Divisors of n, ascending."""
    return [d for d in range(1, n + 1) if n % d == 0]


@dataclass
class _Image:
    channels: int
    size: int


@dataclass
class _Seq:
    dim: int
    tokens: int


class _Gen:
    """Draws blocks while tracking the stream's shape."""

    def __init__(self, ch: Choices, budget: int) -> None:
        self.ch = ch
        self.budget = budget

    def width(self, lo: int = 2, hi: int = 16) -> int:
        return self.ch.integer(lo, hi)

    # -- image stream ---------------------------------------------------------------------------
    def conv(self, s: _Image, out: int | None = None, allow_stride: bool = True) -> Spec:
        c = s.channels
        kind = self.ch.pick(("dense", "dense", "grouped", "depthwise", "transposed"))
        requested = out
        out = self.width() if out is None else out
        groups = 1
        if kind == "grouped":
            common = [g for g in divisors(c) if g > 1 and out % g == 0]
            if common:
                groups = self.ch.pick(common)
        elif kind == "depthwise" and c > 1:
            if requested is None:
                out, groups = c * self.ch.pick((1, 2)), c
            elif requested % c == 0:
                groups = c
        stride = 2 if allow_stride and s.size >= 6 and self.ch.coin(0.2) else 1
        k = self.ch.pick((1, 3))
        norm = self.ch.pick(IMAGE_NORMS)
        spec: Spec = {"op": "conv", "out": out, "k": k, "stride": stride, "groups": groups,
                      "bias": self.ch.coin(), "norm": norm, "act": self.ch.pick(ACTS),
                      "transposed": kind == "transposed" and stride == 1}
        if norm == "gn":
            spec["gn_groups"] = self.ch.pick([g for g in divisors(out) if 1 < g < out] or [1])
        s.channels = out
        s.size = (s.size + 2 * (k // 2) - k) // stride + 1
        return spec

    def keep_size(self, s: _Image, size: int, blocks: list[Spec]) -> list[Spec]:
        """Append a nearest-neighbour resize when a body changed the spatial size."""
        if s.size != size:
            blocks.append({"op": "resize", "size": size})
            s.size = size
        return blocks

    def image_body(self, s: _Image, depth: int, end: int | None = None) -> list[Spec]:
        """A short sequence of blocks; when `end` is given the last block maps to `end` channels."""
        n = self.ch.integer(1, 2)
        blocks = [self.image_block(s, depth + 1) for _ in range(n - 1)]
        blocks.append(self.conv(s, out=end, allow_stride=False) if end is not None
                      else self.image_block(s, depth + 1))
        return blocks

    def image_block(self, s: _Image, depth: int = 0) -> Spec:
        self.budget -= 1
        nested = depth < 2 and self.budget > 0
        options = ["conv", "conv", "pool", "shuffle", "scale", "raw_conv", "shared", "mystery", "dropout",
                   "pixel_shuffle", "upsample", "norm_only", "extra", "extra", "extra"]
        if nested:
            options += ["residual", "residual", "concat", "split", "se"]
        op = self.ch.pick(options)
        c = s.channels
        if op == "conv":
            return self.conv(s)
        if op == "pool" and s.size >= 4:
            s.size //= 2
            return {"op": "pool", "how": self.ch.pick(("max", "avg"))}
        if op == "shuffle" and len(divisors(c)) > 2:
            return {"op": "shuffle", "groups": self.ch.pick([g for g in divisors(c) if 1 < g < c]),
                    "how": self.ch.pick(("view", "module"))}
        if op == "scale":
            return {"op": "scale", "how": self.ch.pick(("mul", "add", "both"))}
        if op == "raw_conv":
            out = self.width()
            s.channels = out
            return {"op": "raw_conv", "out": out}
        if op == "shared":
            return {"op": "shared", "times": self.ch.integer(2, 3)}
        if op == "mystery":
            return {"op": "mystery"}
        if op == "dropout":
            return {"op": "dropout", "p": self.ch.pick((0.1, 0.5))}
        if op == "pixel_shuffle" and c % 4 == 0 and s.size <= 4:
            s.channels, s.size = c // 4, s.size * 2
            return {"op": "pixel_shuffle"}
        if op == "upsample" and s.size <= 4:
            s.size *= 2
            return {"op": "upsample"}
        if op == "extra":
            return self.image_extra(s)
        if op == "norm_only":
            kind = self.ch.pick(("bn", "ln_cl", "rms_cl", "ln_chw", "gn1", "in_affine"))
            return {"op": "norm_only", "norm": kind}
        if op == "residual":
            inner = _Image(c, s.size)
            proj = self.ch.coin(0.3)
            end = self.width() if proj else c
            body = self.keep_size(inner, s.size, self.image_body(inner, depth, end=end))
            s.channels = end
            return {"op": "residual", "body": body, "proj": end if proj and end != c else None}
        if op == "concat":
            branches: list[Any] = []
            total = 0
            for _ in range(self.ch.integer(2, 3)):
                if self.ch.coin(0.3) and "identity" not in branches:
                    branches.append("identity")
                    total += c
                    continue
                inner = _Image(c, s.size)
                body = self.image_body(inner, depth, end=self.width(1, 12))
                branches.append(self.keep_size(inner, s.size, body))
                total += inner.channels
            s.channels = total
            return {"op": "concat", "branches": branches}
        if op == "split" and c >= 2:
            at = self.ch.integer(1, c - 1)
            how = self.ch.pick(("split", "slice", "chunk") if c % 2 == 0 else ("split", "slice"))
            if how == "chunk":
                at = c // 2
            merge = self.ch.pick(("cat", "add", "first"))
            end = self.width() if merge == "add" else None
            parts = []
            outs = []
            for width in (at, c - at):
                inner = _Image(width, s.size)
                body = [] if merge != "add" and self.ch.coin(0.4) else self.image_body(inner, depth, end=end)
                body = self.keep_size(inner, s.size, body)
                parts.append(body)
                outs.append(inner.channels)
            s.channels = outs[0] if merge in ("add", "first") else sum(outs)
            return {"op": "split", "at": at, "how": how, "parts": parts, "merge": merge}
        if op == "se":
            return {"op": "se", "hidden": self.width(1, 8), "how": self.ch.pick(("conv", "linear")),
                    "gate": self.ch.pick(("sigmoid", "hardsigmoid"))}
        return self.conv(s)

    def image_extra(self, s: _Image) -> Spec:
        """Channel-mixing, re-arranging and hard-coded constructs."""
        c = s.channels
        op = self.ch.pick(("cat_self", "gate_mul", "spatial_attn", "cl_linear", "token_mix", "hardcoded",
                           "grouped_sum", "fn", "repeat_c", "pad_c", "zero_cat", "buffer_mask", "einsum",
                           "stack_sum", "flatten_unflatten", "reuse", "transposed_up", "conv_dilated",
                           "weight_norm_conv", "where", "topk", "bn_variant", "split_int", "chunk3", "unpool",
                           "cast"))
        if op == "cat_self" and c <= 12:
            s.channels = 2 * c
            return {"op": "cat_self"}
        if op in ("gate_mul", "cl_linear", "einsum", "stack_sum"):
            s.channels = self.width()
            return {"op": op, "out": s.channels}
        if op == "token_mix" and s.size <= 6:
            return {"op": "token_mix"}
        if op == "grouped_sum" and c > 1:
            radix = self.ch.pick([r for r in divisors(c) if r > 1])
            s.channels = c // radix
            return {"op": "grouped_sum", "radix": radix}
        if op == "fn":
            kind = self.ch.pick(("normalize", "softmax", "gate_first", "max_c", "glu", "flip", "roll",
                                 "cumsum", "shape_scalar", "manual_mean", "inplace", "index"))
            if kind == "glu":
                if c % 2:
                    kind = "normalize"
                else:
                    s.channels = c // 2
            return {"op": "fn", "kind": kind}
        if op == "repeat_c" and c <= 12:
            s.channels = 2 * c
            return {"op": "repeat_c", "times": 2}
        if op == "pad_c":
            before, after = self.ch.integer(0, 2), self.ch.integer(1, 2)
            s.channels = c + before + after
            return {"op": "pad_c", "before": before, "after": after}
        if op == "zero_cat":
            extra = self.ch.integer(1, 4)
            s.channels = c + extra
            return {"op": "zero_cat", "extra": extra}
        if op == "buffer_mask":
            return {"op": "buffer_mask", "persistent": self.ch.coin(0.7)}
        if op == "flatten_unflatten" and c * s.size * s.size <= 200:
            s.channels = self.width(1, 8)
            return {"op": "flatten_unflatten", "out": s.channels}
        if op == "reuse":
            return {"op": "reuse", "pick": self.ch.integer(0, 9)}
        if op == "transposed_up" and s.size <= 4:
            out = self.width()
            common = [g for g in divisors(c) if out % g == 0]
            s.channels, s.size = out, s.size * 2
            return {"op": "transposed_up", "out": out, "groups": self.ch.pick(common)}
        if op == "conv_dilated" and s.size >= 3:
            s.channels = self.width()
            return {"op": "conv_dilated", "out": s.channels,
                    "mode": self.ch.pick(("zeros", "reflect", "circular", "same"))}
        if op == "weight_norm_conv":
            s.channels = self.width()
            return {"op": op, "out": s.channels}
        if op == "topk" and c > 1:
            s.channels = self.ch.integer(1, c - 1)
            return {"op": "topk", "k": s.channels}
        if op == "split_int" and c >= 3:
            size = self.ch.integer(1, c - 1)
            parts = -(-c // size)
            s.channels = parts * self.width(1, 6)
            return {"op": "split_int", "size": size, "each": s.channels // parts}
        if op == "chunk3" and c >= 3:
            return {"op": "chunk3"}
        if op == "unpool" and s.size % 2 == 0:
            return {"op": "unpool"}
        if op == "cast":
            return {"op": "cast"}
        if op == "bn_variant":
            return {"op": op, "affine": self.ch.coin(), "track": self.ch.coin()}
        if op in ("spatial_attn", "hardcoded", "where"):
            return {"op": op}
        return {"op": "fn", "kind": "max_c"}

    # -- sequence stream ------------------------------------------------------------------------
    def seq_block(self, s: _Seq, depth: int = 0) -> Spec:
        self.budget -= 1
        op = self.ch.pick(("linear", "norm", "attn", "attn", "mlp", "shared_linear", "layer_scale",
                           "raw_matmul", "split", "mystery", "pos_embed", "conv1d", "bn1d", "fn",
                           "cat_self", "buffer_mask", "einsum", "weight_norm_linear", "lstm", "where",
                           "tied_ae", "mha", "encoder_layer", "gru", "cast"))
        d = s.dim
        if op == "linear":
            out = self.width(2, 24)
            s.dim = out
            return {"op": "linear", "out": out, "bias": self.ch.coin(), "act": self.ch.pick(ACTS)}
        if op == "norm":
            return {"op": "norm", "kind": self.ch.pick(("ln", "rms", "ln_nobias", "ln_noaffine"))}
        if op == "attn":
            kv = self.ch.integer(1, 3)
            heads = kv * self.ch.pick((1, 2, 3))
            return {"op": "attn", "heads": heads, "kv_heads": kv, "head_dim": self.ch.integer(2, 6),
                    "how": self.ch.pick(("sdpa", "manual", "repeat", "sdpa_gqa")),
                    "causal": self.ch.coin(), "bias": self.ch.coin(),
                    "norm": self.ch.pick(("ln", "rms", None))}
        if op == "mlp":
            return {"op": "mlp", "hidden": self.width(2, 24), "gated": self.ch.coin(),
                    "norm": self.ch.pick(("ln", "rms", None)), "act": self.ch.pick(("gelu", "silu", "relu"))}
        if op == "shared_linear":
            return {"op": "shared_linear", "times": self.ch.integer(2, 3)}
        if op == "layer_scale":
            return {"op": "layer_scale"}
        if op == "raw_matmul":
            out = self.width(2, 16)
            s.dim = out
            return {"op": "raw_matmul", "out": out}
        if op == "split" and d >= 2 and depth < 1:
            at = self.ch.integer(1, d - 1)
            parts = []
            outs = []
            for width in (at, d - at):
                if self.ch.coin(0.5):
                    parts.append([])
                    outs.append(width)
                    continue
                inner = _Seq(width, s.tokens)
                parts.append([self.seq_block(inner, depth + 1)])
                outs.append(inner.dim)
            s.dim = sum(outs)
            return {"op": "split", "at": at, "parts": parts}
        if op == "conv1d":
            out = self.width(2, 16)
            common = [g for g in divisors(d) if out % g == 0]
            s.dim = out
            return {"op": "conv1d", "out": out, "k": self.ch.pick((1, 3)), "groups": self.ch.pick(common)}
        if op == "bn1d":
            return {"op": "bn1d"}
        if op == "fn":
            kind = self.ch.pick(("normalize", "softmax", "gate_first", "max_c", "select_token", "flip",
                                 "cumsum", "shape_scalar", "manual_mean", "inplace", "index"))
            return {"op": "fn", "kind": kind}
        if op == "cat_self" and d <= 12:
            s.dim = 2 * d
            return {"op": "cat_self"}
        if op == "buffer_mask":
            return {"op": "buffer_mask", "persistent": self.ch.coin(0.7)}
        if op == "einsum":
            s.dim = self.width(2, 16)
            return {"op": "einsum", "out": s.dim}
        if op in ("weight_norm_linear", "lstm"):
            s.dim = self.width(2, 12)
            return {"op": op, "out": s.dim}
        if op == "where":
            return {"op": "where"}
        if op == "tied_ae":
            return {"op": "tied_ae", "hidden": self.width(2, 16)}
        if op in ("mha", "encoder_layer"):
            heads = self.ch.pick([h for h in divisors(d) if h <= 4])
            return {"op": op, "heads": heads, "ffn": self.width(2, 24), "norm_first": self.ch.coin()}
        if op == "gru":
            s.dim = self.width(2, 12)
            return {"op": "gru", "out": s.dim}
        if op == "cast":
            return {"op": "cast"}
        if op == "mystery":
            return {"op": "mystery"}
        if op == "pos_embed":
            return {"op": "pos_embed"}
        return {"op": "norm", "kind": "ln"}


def _prune_settings(ch: Choices) -> Spec:
    settings: Spec = {"output": ch.pick(("auto", "auto", "auto", "graph_module")),
                      "criterion": ch.pick(("l2", "l1")),
                      "round_to": ch.pick((None, None, 2, 4)),
                      "ignore_pick": ch.integer(0, 50) if ch.coin(0.25) else None,
                      "tracer": ch.pick(("auto", "auto", "auto", "export"))}
    if ch.coin(0.75):
        settings["ratio"] = ch.pick((0.1, 0.25, 0.3, 0.5, 0.7, 0.9))
    else:
        settings["target"] = f"{ch.pick(('macs', 'params'))}={ch.pick((0.3, 0.5, 0.7, 0.9))}"
    return settings


def generate(ch: Choices, max_blocks: int = 6) -> Spec:
    """Draw one architecture spec plus pruning settings."""
    gen = _Gen(ch, budget=ch.integer(2, max_blocks))
    kind = ch.pick(("image", "image", "tokens", "seq"))
    spec: Spec = {"seed": ch.integer(0, 10_000), "prune": _prune_settings(ch), "save": ch.coin(0.3),
                  "batch": ch.pick((2, 1, 3)),
                  "dtype": ch.pick(("float64", "bfloat16", "float16")) if ch.coin(0.15) else "float32"}
    blocks: list[Spec] = []
    if kind == "image":
        s = _Image(ch.integer(1, 4), ch.pick((4, 6, 8, 5, 7)))
        spec["input"] = {"kind": "image", "channels": s.channels, "size": s.size, "aux": ch.coin(0.1),
                         "nhwc": ch.coin(0.1)}
        while gen.budget > 0:
            if ch.coin(0.15):
                dim = gen.width(2, 16)
                blocks.append({"op": "to_tokens", "dim": dim})
                seq = _Seq(dim, s.size * s.size)
                while gen.budget > 0:
                    blocks.append(gen.seq_block(seq))
                spec["blocks"] = blocks
                spec["head"] = _seq_head(ch, seq, tokens_input=False)
                return spec
            blocks.append(gen.image_block(s))
        spec["blocks"] = blocks
        spec["head"] = {"kind": ch.pick(("flatten_linear", "pool_linear", "map", "two", "dict", "param_out",
                                         "pool2_view_linear")),
                        "out": ch.integer(2, 6)}
        return spec
    seq = _Seq(gen.width(2, 16), ch.integer(3, 6))
    spec["input"] = {"kind": kind, "dim": seq.dim, "tokens": seq.tokens, "vocab": ch.integer(8, 20)}
    emb_dim = seq.dim
    while gen.budget > 0:
        blocks.append(gen.seq_block(seq))
    spec["blocks"] = blocks
    spec["head"] = _seq_head(ch, seq, tokens_input=kind == "tokens", emb_dim=emb_dim)
    return spec


def _seq_head(ch: Choices, s: _Seq, tokens_input: bool, emb_dim: int = -1) -> Spec:
    options = ["mean_linear", "seq", "last_linear"]
    if tokens_input:
        options.append("lm")
    head: Spec = {"kind": ch.pick(options), "out": ch.integer(2, 6)}
    if head["kind"] == "lm":
        head["tied"] = s.dim == emb_dim and ch.coin(0.7)
    return head
