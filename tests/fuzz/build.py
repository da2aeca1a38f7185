"""Turn a fuzz spec (tests/fuzz/grammar.py) into a real nn.Module and example inputs.

Every block is its own small module class (tests/fuzz/blocks.py), so the same-class rewrite and
its fixers are exercised, not only the GraphModule path. Weights are seeded from the spec;
constant-initialised parameters (norm weights, layer scales, PReLU slopes) are re-drawn so that a
wrong slice changes the output.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from prunec.zoo import randomize_norms
from torch import nn

from tests.fuzz import blocks as B

Spec = dict[str, Any]


class _Builder:
    """Builds blocks while tracking the stream's shape (the same arithmetic as the grammar)."""

    def __init__(self) -> None:
        self.c = 0
        self.size = 0
        self.d = 0
        self.t = 0
        self.tokens = False
        """True once the stream is a (B, T, D) sequence."""
        self.convs: list[B.ConvBlock] = []
        """Conv blocks built so far (a 'reuse' block applies one of them again)."""

    def image_seq(self, specs: list[Spec]) -> nn.Sequential:
        return nn.Sequential(*[self.image(s) for s in specs])

    def image(self, spec: Spec) -> nn.Module:
        if self.tokens:
            return self.seq(spec)
        op, c = spec["op"], self.c
        if op == "conv":
            m = B.ConvBlock(spec, c, self.size)
            self.convs.append(m)
            self.c = spec["out"]
            self.size = (self.size + 2 * (spec["k"] // 2) - spec["k"]) // spec["stride"] + 1
            return m
        if op == "pool":
            self.size //= 2
            return nn.MaxPool2d(2) if spec["how"] == "max" else nn.AvgPool2d(2)
        if op == "shuffle":
            return B.Shuffle(spec["groups"], spec["how"])
        if op == "scale":
            return B.Scale(c, spec["how"])
        if op == "raw_conv":
            self.c = spec["out"]
            return B.RawConv(c, spec["out"])
        if op == "shared":
            return B.Shared(c, spec["times"])
        if op == "mystery":
            return B.Mystery()
        if op == "dropout":
            return nn.Dropout(spec["p"])
        if op == "pixel_shuffle":
            self.c, self.size = c // 4, self.size * 2
            return nn.PixelShuffle(2)
        if op == "upsample":
            self.size *= 2
            return nn.Upsample(scale_factor=2, mode="nearest")
        if op == "resize":
            self.size = spec["size"]
            return B.Resize(spec["size"])
        if op == "norm_only":
            return B.image_norm(spec["norm"], c, self.size)
        extra = self.image_extra(spec, c)
        if extra is not None:
            return extra
        if op == "residual":
            body = self.image_seq(spec["body"])
            proj = nn.Conv2d(c, spec["proj"], 1) if spec["proj"] is not None else None
            return B.Residual(body, proj)
        if op == "concat":
            branches: list[nn.Module] = []
            total = 0
            for br in spec["branches"]:
                self.c = c
                branches.append(nn.Identity() if br == "identity" else self.image_seq(br))
                total += self.c
            self.c = total
            return B.Concat(branches)
        if op == "split":
            return self._split(spec, c)
        if op == "se":
            return B.SqueezeExcite(c, spec["hidden"], spec["how"], spec["gate"])
        if op == "to_tokens":
            self.d, self.t, self.tokens = spec["dim"], self.size * self.size, True
            return B.ToTokens(c, spec["dim"])
        raise ValueError(f"unknown block {op!r}")

    def image_extra(self, spec: Spec, c: int) -> nn.Module | None:
        op = spec["op"]
        if op == "cat_self":
            self.c = 2 * c
            return B.CatSelf(1)
        if op in ("gate_mul", "cl_linear", "einsum", "stack_sum"):
            self.c = spec["out"]
            cls = {"gate_mul": B.GateMul, "cl_linear": B.ChannelsLastLinear, "stack_sum": B.StackSum}.get(op)
            return cls(c, spec["out"]) if cls is not None else B.EinsumMix(c, spec["out"], image=True)
        if op == "spatial_attn":
            return B.SpatialAttention()
        if op == "token_mix":
            return B.TokenMix(self.size)
        if op == "hardcoded":
            return B.HardCoded(c)
        if op == "grouped_sum":
            self.c = c // spec["radix"]
            return B.GroupedSum(spec["radix"])
        if op == "fn":
            if spec["kind"] == "glu":
                self.c = c // 2
            return B.Fn(spec["kind"], 1)
        if op == "repeat_c":
            self.c = c * spec["times"]
            return B.RepeatC(spec["times"])
        if op == "pad_c":
            self.c = c + spec["before"] + spec["after"]
            return B.PadC(spec["before"], spec["after"])
        if op == "zero_cat":
            self.c = c + spec["extra"]
            return B.ZeroCat(spec["extra"])
        if op == "buffer_mask":
            return B.BufferMask((1, c, 1, 1), spec["persistent"])
        if op == "flatten_unflatten":
            self.c = spec["out"]
            s = self.size
            return nn.Sequential(nn.Flatten(1), nn.Linear(c * s * s, spec["out"] * s * s),
                                 nn.Unflatten(1, (spec["out"], s, s)))
        if op == "reuse":
            fits = [m for m in self.convs if m.keeps(c)]
            return fits[spec["pick"] % len(fits)] if fits else nn.Identity()
        if op == "transposed_up":
            self.c, self.size = spec["out"], self.size * 2
            return nn.ConvTranspose2d(c, spec["out"], 2, stride=2, groups=spec["groups"])
        if op == "weight_norm_conv":
            self.c = spec["out"]
            return B.WeightNormConv(c, spec["out"])
        if op == "where":
            return B.WhereGate((1, c, 1, 1))
        if op == "topk":
            self.c = spec["k"]
            return B.TopK(spec["k"])
        if op == "split_int":
            self.c = -(-c // spec["size"]) * spec["each"]
            return B.SplitInt(c, spec["size"], spec["each"])
        if op == "chunk3":
            return B.Chunk3()
        if op == "unpool":
            return B.Unpool()
        if op == "cast":
            return B.Cast()
        if op == "bn_variant":
            return nn.BatchNorm2d(c, affine=spec["affine"], track_running_stats=spec["track"])
        if op == "conv_dilated":
            self.c = spec["out"]
            if spec["mode"] == "same":
                return nn.Conv2d(c, spec["out"], 3, padding="same", dilation=2)
            return nn.Conv2d(c, spec["out"], 3, padding=2, dilation=2, padding_mode=spec["mode"])
        return None

    def _split(self, spec: Spec, c: int) -> nn.Module:
        outs, parts = [], []
        for width, body in zip((spec["at"], c - spec["at"]), spec["parts"], strict=True):
            self.c = width
            parts.append(self.image_seq(body))
            outs.append(self.c)
        self.c = outs[0] if spec["merge"] in ("add", "first") else sum(outs)
        return B.Split(spec["at"], spec["how"], parts, spec["merge"])

    def seq(self, spec: Spec) -> nn.Module:
        op, d = spec["op"], self.d
        if op == "linear":
            self.d = spec["out"]
            return B.LinearAct(d, spec["out"], spec["bias"], spec["act"])
        if op == "norm":
            return B.seq_norm(spec["kind"], d)
        if op == "attn":
            return B.Attention(d, spec)
        if op == "mlp":
            return B.Mlp(d, spec)
        if op == "shared_linear":
            return B.SharedLinear(d, spec["times"])
        if op == "layer_scale":
            return B.LayerScale(d)
        if op == "raw_matmul":
            self.d = spec["out"]
            return B.RawMatmul(d, spec["out"])
        if op == "split":
            outs, parts = [], []
            for width, body in zip((spec["at"], d - spec["at"]), spec["parts"], strict=True):
                self.d = width
                parts.append(nn.Sequential(*[self.seq(s) for s in body]))
                outs.append(self.d)
            self.d = sum(outs)
            return B.Split(spec["at"], "slice", parts, "cat", dim=-1)
        if op == "conv1d":
            self.d = spec["out"]
            return B.Conv1dSeq(d, spec["out"], spec["k"], spec["groups"])
        if op == "bn1d":
            return B.BatchNormSeq(d)
        if op == "fn":
            return B.Fn(spec["kind"], -1)
        if op == "cat_self":
            self.d = 2 * d
            return B.CatSelf(-1)
        if op == "buffer_mask":
            return B.BufferMask((d,), spec["persistent"])
        if op == "einsum":
            self.d = spec["out"]
            return B.EinsumMix(d, spec["out"], image=False)
        if op == "weight_norm_linear":
            self.d = spec["out"]
            return nn.utils.parametrizations.weight_norm(nn.Linear(d, spec["out"]))
        if op == "lstm":
            self.d = spec["out"]
            return B.Lstm(d, spec["out"])
        if op == "where":
            return B.WhereGate((d,))
        if op == "tied_ae":
            return B.TiedAutoencoder(d, spec["hidden"])
        if op == "mha":
            return B.Mha(d, spec["heads"])
        if op == "encoder_layer":
            return nn.TransformerEncoderLayer(d, spec["heads"], spec["ffn"], dropout=0.1, batch_first=True,
                                              norm_first=spec["norm_first"])
        if op == "gru":
            self.d = spec["out"]
            return B.Gru(d, spec["out"])
        if op == "cast":
            return B.Cast()
        if op == "mystery":
            return B.Mystery()
        if op == "pos_embed":
            return B.PosEmbed(self.t, d)
        raise ValueError(f"unknown block {op!r}")


class FuzzNet(nn.Module):
    """stem (embedding for token inputs) -> blocks -> head."""

    def __init__(self, spec: Spec) -> None:
        super().__init__()
        inp, head = spec["input"], spec["head"]
        b = _Builder()
        self.embed = None
        self.aux = None
        self.nhwc = bool(inp.get("nhwc"))
        if inp["kind"] == "image":
            b.c, b.size = inp["channels"], inp["size"]
            if inp.get("aux"):
                self.aux = nn.Conv2d(2, b.c, 1)
        else:
            b.d, b.t, b.tokens = inp["dim"], inp["tokens"], True
            if inp["kind"] == "tokens":
                self.embed = nn.Embedding(inp["vocab"], inp["dim"])
        self.blocks = nn.Sequential(*[b.image(s) for s in spec["blocks"]])
        self.head_kind = head["kind"]
        self.head: nn.Module | None = None
        if self.head_kind == "flatten_linear":
            self.head = nn.Linear(b.c * b.size * b.size, head["out"])
        elif self.head_kind == "pool2_view_linear":
            self.head = nn.Linear(b.c * 4, head["out"])
        elif self.head_kind in ("pool_linear", "two", "dict", "param_out"):
            self.head = nn.Linear(b.c, head["out"])
        elif self.head_kind in ("mean_linear", "last_linear"):
            self.head = nn.Linear(b.d, head["out"])
        elif self.head_kind == "lm":
            self.head = nn.Linear(b.d, inp["vocab"], bias=False)
            if head.get("tied") and self.embed is not None:
                self.head.weight = self.embed.weight

    def forward(self, x: torch.Tensor, aux: torch.Tensor | None = None) -> Any:
        if self.nhwc:
            x = x.permute(0, 3, 1, 2)
        if self.embed is not None:
            x = self.embed(x)
        if aux is not None and self.aux is not None:
            x = x + self.aux(aux)
        x = self.blocks(x)
        kind = self.head_kind
        if kind in ("map", "seq"):
            return x
        assert self.head is not None  # every other head kind has a module
        if kind == "flatten_linear":
            return self.head(x.flatten(1))
        if kind == "pool_linear":
            return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))
        if kind == "two":
            return self.head(x.mean((2, 3))), x
        if kind == "pool2_view_linear":
            return self.head(F.adaptive_avg_pool2d(x, 2).contiguous().view(x.shape[0], -1))
        if kind == "dict":
            return {"logits": self.head(x.mean((2, 3))), "features": x}
        if kind == "param_out":
            return self.head(x.mean((2, 3))), self.head.bias
        if kind == "mean_linear":
            return self.head(x.mean(1))
        if kind == "last_linear":
            return self.head(x[:, -1])
        return self.head(x)


def _redraw_constants(model: nn.Module, gen: torch.Generator) -> None:
    """Parameters initialised to a constant (norm weights, PReLU slopes) get random values."""
    with torch.no_grad():
        for p in model.parameters():
            if p.numel() > 1 and bool((p == p.flatten()[0]).all()):
                p.copy_(torch.rand(p.shape, generator=gen) + 0.5)
            elif p.numel() == 1:
                p.fill_(float(torch.rand((), generator=gen)) * 0.5)


def build(spec: Spec) -> tuple[nn.Module, Any]:
    """The model (eval mode, seeded weights) and example inputs of a spec."""
    torch.manual_seed(spec["seed"])
    model = FuzzNet(spec)
    randomize_norms(model, seed=spec["seed"])
    _redraw_constants(model, torch.Generator().manual_seed(spec["seed"] + 1))
    dtype = getattr(torch, spec.get("dtype", "float32"))
    model.to(dtype).eval()
    gen = torch.Generator().manual_seed(spec["seed"] + 2)
    inp, b = spec["input"], spec.get("batch", 2)
    if inp["kind"] == "image":
        x = torch.randn(b, inp["channels"], inp["size"], inp["size"], generator=gen, dtype=dtype)
        if inp.get("nhwc"):
            x = x.permute(0, 2, 3, 1).contiguous()
        if inp.get("aux"):
            x = {"x": x, "aux": torch.randn(b, 2, inp["size"], inp["size"], generator=gen, dtype=dtype)}
    elif inp["kind"] == "tokens":
        x = torch.randint(0, inp["vocab"], (b, inp["tokens"]), generator=gen)
    else:
        x = torch.randn(b, inp["tokens"], inp["dim"], generator=gen, dtype=dtype)
    return model, x
