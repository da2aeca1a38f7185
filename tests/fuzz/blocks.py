"""Block modules the fuzz builder assembles (one small class per construct of the grammar)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

Spec = dict[str, Any]


def _register_mystery() -> None:
    """A torch.library custom op that prunec has no rule for (its channels must be pinned)."""
    if hasattr(torch.ops, "prunec_fuzz") and hasattr(torch.ops.prunec_fuzz, "mystery"):
        return

    @torch.library.custom_op("prunec_fuzz::mystery", mutates_args=())
    def mystery(x: torch.Tensor) -> torch.Tensor:
        return x * 0.5 + torch.tanh(x)

    @mystery.register_fake
    def _(x: torch.Tensor) -> torch.Tensor:
        return torch.empty_like(x)


_register_mystery()


def act_module(name: str | None, channels: int | None = None) -> nn.Module:
    if name is None:
        return nn.Identity()
    if name == "prelu":
        return nn.PReLU(channels or 1)
    return {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "hardswish": nn.Hardswish,
            "tanh": nn.Tanh}[name]()


class ChannelsLast(nn.Module):
    """A norm over the channel axis of an NCHW tensor, applied channels-last (ConvNeXt style)."""

    def __init__(self, norm: nn.Module) -> None:
        super().__init__()
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def image_norm(kind: str | None, c: int, size: int, gn_groups: int = 1) -> nn.Module:
    if kind is None:
        return nn.Identity()
    if kind == "bn":
        return nn.BatchNorm2d(c)
    if kind == "gn":
        return nn.GroupNorm(gn_groups, c)
    if kind == "gn1":
        return nn.GroupNorm(1, c)
    if kind == "in":
        return nn.InstanceNorm2d(c)
    if kind == "in_affine":
        return nn.InstanceNorm2d(c, affine=True)
    if kind == "ln_cl":
        return ChannelsLast(nn.LayerNorm(c))
    if kind == "rms_cl":
        return ChannelsLast(nn.RMSNorm(c))
    if kind == "ln_chw":
        return nn.LayerNorm([c, size, size])
    raise ValueError(f"unknown norm {kind!r}")


class ConvBlock(nn.Module):
    """conv (dense, grouped, depthwise or transposed) -> norm -> activation."""

    def __init__(self, spec: Spec, c: int, size: int) -> None:
        super().__init__()
        k, out, stride = spec["k"], spec["out"], spec["stride"]
        if spec["transposed"]:
            self.conv: nn.Module = nn.ConvTranspose2d(c, out, k, padding=k // 2, bias=spec["bias"])
        else:
            self.conv = nn.Conv2d(c, out, k, stride=stride, padding=k // 2, groups=spec["groups"],
                                  bias=spec["bias"])
        new_size = (size + 2 * (k // 2) - k) // stride + 1
        self.norm = image_norm(spec["norm"], out, new_size, spec.get("gn_groups", 1))
        self.act = act_module(spec["act"], out)

    def keeps(self, c: int) -> bool:
        """Whether applying this block again to a `c`-channel map keeps its shape."""
        conv = self.conv
        return (conv.in_channels == conv.out_channels == c and conv.stride in (1, (1, 1))
                and not isinstance(self.norm, nn.LayerNorm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class Shuffle(nn.Module):
    """Channel shuffle, written as view/transpose/reshape or as nn.ChannelShuffle."""

    def __init__(self, groups: int, how: str) -> None:
        super().__init__()
        self.groups, self.how = groups, how
        self.module = nn.ChannelShuffle(groups) if how == "module" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.module is not None:
            return self.module(x)
        b, c, h, w = x.shape
        return x.contiguous().view(b, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class Scale(nn.Module):
    """Parameters used directly in forward: x * gamma and/or x + beta."""

    def __init__(self, c: int, how: str) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.rand(1, c, 1, 1) + 0.5) if how in ("mul", "both") else None
        self.beta = nn.Parameter(torch.randn(c, 1, 1)) if how in ("add", "both") else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gamma is not None:
            x = x * self.gamma
        if self.beta is not None:
            x = x + self.beta
        return x


class RawConv(nn.Module):
    """F.conv2d with a raw parameter (no nn.Conv2d module)."""

    def __init__(self, c: int, out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out, c, 3, 3) / math.sqrt(9 * c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, padding=1)


class Shared(nn.Module):
    """One conv module applied several times (shared weights)."""

    def __init__(self, c: int, times: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.times = times

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.times):
            x = torch.relu(self.conv(x))
        return x


class Mystery(nn.Module):
    """Calls a custom op that has no prunec rule."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.prunec_fuzz.mystery(x)


class Resize(nn.Module):
    """Nearest-neighbour resize to a fixed spatial size."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=(self.size, self.size), mode="nearest")


class Residual(nn.Module):
    """x + body(x), with a 1x1 projection on the shortcut when the width changes."""

    def __init__(self, body: nn.Module, proj: nn.Module | None) -> None:
        super().__init__()
        self.body, self.proj = body, proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + (self.proj(x) if self.proj is not None else x)


class Concat(nn.Module):
    """Branches (or the identity) concatenated along `dim`."""

    def __init__(self, branches: list[nn.Module], dim: int = 1) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in self.branches], dim=self.dim)


class Split(nn.Module):
    """Split along `dim` at `at` (split / slice / chunk), process the parts, merge them."""

    def __init__(self, at: int, how: str, parts: list[nn.Module], merge: str, dim: int = 1) -> None:
        super().__init__()
        self.at, self.how, self.merge, self.dim = at, how, merge, dim
        self.parts = nn.ModuleList(parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[self.dim]
        if self.how == "split":
            a, b = torch.split(x, [self.at, c - self.at], dim=self.dim)
        elif self.how == "chunk":
            a, b = x.chunk(2, dim=self.dim)
        else:
            a, b = x.narrow(self.dim, 0, self.at), x.narrow(self.dim, self.at, c - self.at)
            if self.dim == 1:
                a, b = x[:, : self.at], x[:, self.at:]
        if self.merge == "first":
            return self.parts[0](a)
        a, b = self.parts[0](a), self.parts[1](b)
        return a + b if self.merge == "add" else torch.cat([a, b], dim=self.dim)


class SqueezeExcite(nn.Module):
    """x * gate(fc2(relu(fc1(pool(x))))), with 1x1 convs or linears."""

    def __init__(self, c: int, hidden: int, how: str, gate: str) -> None:
        super().__init__()
        self.how = how
        if how == "conv":
            self.fc1: nn.Module = nn.Conv2d(c, hidden, 1)
            self.fc2: nn.Module = nn.Conv2d(hidden, c, 1)
        else:
            self.fc1, self.fc2 = nn.Linear(c, hidden), nn.Linear(hidden, c)
        self.gate = nn.Sigmoid() if gate == "sigmoid" else nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.how == "conv":
            s = self.fc2(torch.relu(self.fc1(F.adaptive_avg_pool2d(x, 1))))
        else:
            s = self.fc2(torch.relu(self.fc1(x.mean((2, 3))))).view(x.shape[0], x.shape[1], 1, 1)
        return x * self.gate(s)


class ToTokens(nn.Module):
    """1x1 conv patch embedding, then (B, C, H, W) -> (B, H*W, C)."""

    def __init__(self, c: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(c, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


def seq_norm(kind: str | None, d: int) -> nn.Module:
    if kind is None:
        return nn.Identity()
    if kind == "ln":
        return nn.LayerNorm(d)
    if kind == "rms":
        return nn.RMSNorm(d)
    if kind == "ln_nobias":
        return nn.LayerNorm(d, bias=False)
    if kind == "ln_noaffine":
        return nn.LayerNorm(d, elementwise_affine=False)
    raise ValueError(f"unknown norm {kind!r}")


class LinearAct(nn.Module):
    """Linear then activation."""

    def __init__(self, d: int, out: int, bias: bool, act: str | None) -> None:
        super().__init__()
        self.fc = nn.Linear(d, out, bias=bias)
        self.act = act_module(act, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc(x))


class Attention(nn.Module):
    """Pre-norm multi-head attention with `kv_heads` key/value heads (GQA), residual."""

    def __init__(self, d: int, spec: Spec) -> None:
        super().__init__()
        self.heads, self.kv, self.hd = spec["heads"], spec["kv_heads"], spec["head_dim"]
        self.how, self.causal = spec["how"], spec["causal"]
        self.norm = seq_norm(spec["norm"], d)
        self.q = nn.Linear(d, self.heads * self.hd, bias=spec["bias"])
        self.k = nn.Linear(d, self.kv * self.hd, bias=spec["bias"])
        self.v = nn.Linear(d, self.kv * self.hd, bias=spec["bias"])
        self.o = nn.Linear(self.heads * self.hd, d, bias=spec["bias"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        h = self.norm(x)
        q = self.q(h).view(b, t, self.heads, self.hd).transpose(1, 2)
        k = self.k(h).view(b, t, self.kv, self.hd).transpose(1, 2)
        v = self.v(h).view(b, t, self.kv, self.hd).transpose(1, 2)
        rep = self.heads // self.kv
        if self.how == "sdpa_gqa":
            y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal, enable_gqa=rep > 1)
        else:
            if rep > 1 and self.how == "sdpa":  # HF's repeat_kv: expand, then merge
                k = k[:, :, None].expand(b, self.kv, rep, t, self.hd).reshape(b, self.heads, t, self.hd)
                v = v[:, :, None].expand(b, self.kv, rep, t, self.hd).reshape(b, self.heads, t, self.hd)
            elif rep > 1:
                k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
            if self.how == "manual":
                scores = q @ k.transpose(-2, -1) / math.sqrt(self.hd)
                if self.causal:
                    mask = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
                    scores = scores.masked_fill(mask, float("-inf"))
                y = scores.softmax(-1) @ v
            else:
                y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return x + self.o(y.transpose(1, 2).reshape(b, t, self.heads * self.hd))


class Mlp(nn.Module):
    """Pre-norm MLP (plain or gated), residual."""

    def __init__(self, d: int, spec: Spec) -> None:
        super().__init__()
        f = spec["hidden"]
        self.norm = seq_norm(spec["norm"], d)
        self.gated = spec["gated"]
        self.up = nn.Linear(d, f)
        self.gate = nn.Linear(d, f) if self.gated else None
        self.down = nn.Linear(f, d)
        self.act = act_module(spec["act"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        if self.gate is not None:
            return x + self.down(self.act(self.gate(h)) * self.up(h))
        return x + self.down(self.act(self.up(h)))


class SharedLinear(nn.Module):
    """One Linear applied several times."""

    def __init__(self, d: int, times: int) -> None:
        super().__init__()
        self.fc = nn.Linear(d, d)
        self.times = times

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.times):
            x = F.gelu(self.fc(x))
        return x


class LayerScale(nn.Module):
    """x * gamma over the last axis."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.rand(d) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class RawMatmul(nn.Module):
    """x @ W with a raw parameter."""

    def __init__(self, d: int, out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(d, out) / math.sqrt(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight


class PosEmbed(nn.Module):
    """x + a learned position table (a parameter read whole)."""

    def __init__(self, t: int, d: int) -> None:
        super().__init__()
        self.pos = nn.Parameter(torch.randn(1, t, d) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pos




# -- channel-mixing, re-arranging and hard-coded constructs ------------------------------------

class CatSelf(nn.Module):
    """torch.cat([x, x]): every channel appears twice."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, x], dim=self.dim)


class GateMul(nn.Module):
    """a(x) * sigmoid(b(x)): the product of two branches."""

    def __init__(self, c: int, out: int) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(c, out, 1), nn.Conv2d(c, out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x) * torch.sigmoid(self.b(x))


class SpatialAttention(nn.Module):
    """CBAM's spatial gate: mean and max over channels -> conv -> sigmoid -> x * gate."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
        return x * torch.sigmoid(self.conv(s))


class ChannelsLastLinear(nn.Module):
    """A Linear over channels of an NCHW tensor (ConvNeXt's pointwise layers)."""

    def __init__(self, c: int, out: int) -> None:
        super().__init__()
        self.fc = nn.Linear(c, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class TokenMix(nn.Module):
    """MLP-Mixer style: a Linear over the flattened spatial positions, per channel."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.fc = nn.Linear(size * size, size * size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        return self.fc(x.flatten(2)).contiguous().view(b, c, h, w)


class HardCoded(nn.Module):
    """Hard-codes its channel count in forward: the same-class rewrite cannot fix it (GraphModule)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.c = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        return x + x.reshape(b, self.c, h * w).softmax(-1).reshape(b, self.c, h, w)


class GroupedSum(nn.Module):
    """ResNeSt's split sum: (B, r*C, H, W) -> view (B, r, C, H, W) -> sum over r."""

    def __init__(self, radix: int) -> None:
        super().__init__()
        self.radix = radix

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        return x.contiguous().view(b, self.radix, c // self.radix, h, w).sum(1)


class Fn(nn.Module):
    """A parameter-free function of x, named by `kind`."""

    def __init__(self, kind: str, dim: int = 1) -> None:
        super().__init__()
        self.kind, self.dim = kind, dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kind
        if k == "normalize":
            return F.normalize(x, dim=self.dim)
        if k == "softmax":
            return x.softmax(self.dim)
        if k == "gate_first":
            return x * torch.sigmoid(x.narrow(self.dim, 0, 1))
        if k == "max_c":
            return x + x.amax(self.dim, keepdim=True)
        if k == "glu":
            return F.glu(x, dim=self.dim)
        if k == "select_token":
            return x + x[:, :1]
        if k == "flip":
            return x.flip(self.dim)
        if k == "roll":
            return x.roll(1, self.dim)
        if k == "cumsum":
            return x.cumsum(self.dim)
        if k == "shape_scalar":  # a size read in forward: specialised to a constant when traced
            return x * (2.0 / x.shape[self.dim])
        if k == "manual_mean":
            return x - x.sum(self.dim, keepdim=True) / x.shape[self.dim]
        if k == "inplace":
            y = x.clone()
            y.narrow(self.dim, 0, 1).mul_(2.0)
            return y
        if k == "index":
            n = x.shape[self.dim]
            return x.index_select(self.dim, torch.arange(n - 1, -1, -1, device=x.device))
        raise ValueError(f"unknown function {k!r}")


class RepeatC(nn.Module):
    """x.repeat along channels."""

    def __init__(self, times: int) -> None:
        super().__init__()
        self.times = times

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.repeat(1, self.times, 1, 1)


class PadC(nn.Module):
    """Constant padding of the channel axis (extra zero channels before and after)."""

    def __init__(self, before: int, after: int) -> None:
        super().__init__()
        self.before, self.after = before, after

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (0, 0, 0, 0, self.before, self.after))


class ZeroCat(nn.Module):
    """cat([x, zeros]) along channels (ResNet's option-A shortcut)."""

    def __init__(self, extra: int) -> None:
        super().__init__()
        self.extra = extra

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        return torch.cat([x, x.new_zeros(b, self.extra, h, w)], 1)


class BufferMask(nn.Module):
    """x * a registered buffer (persistent: in state_dict and pruned; else a constant)."""

    def __init__(self, shape: tuple[int, ...], persistent: bool) -> None:
        super().__init__()
        self.register_buffer("mask", torch.rand(shape) + 0.5, persistent=persistent)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask


class EinsumMix(nn.Module):
    """A contraction with a raw parameter written as einsum."""

    def __init__(self, c: int, out: int, image: bool) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(out, c) / math.sqrt(c))
        self.eq = "bchw,oc->bohw" if image else "btc,oc->bto"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum(self.eq, x, self.w)


class StackSum(nn.Module):
    """torch.stack of two branches, summed over the new axis."""

    def __init__(self, c: int, out: int) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(c, out, 1), nn.Conv2d(c, out, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.a(x), self.b(x)]).sum(0)


class Conv1dSeq(nn.Module):
    """A Conv1d over the tokens of a (B, T, D) sequence."""

    def __init__(self, d: int, out: int, k: int, groups: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(d, out, k, padding=k // 2, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.transpose(1, 2)).transpose(1, 2)


class BatchNormSeq(nn.Module):
    """BatchNorm1d over the features of a (B, T, D) sequence."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x.transpose(1, 2)).transpose(1, 2)


class WeightNormConv(nn.Module):
    """A conv whose weight is computed in forward (manual weight normalisation)."""

    def __init__(self, c: int, out: int) -> None:
        super().__init__()
        self.v = nn.Parameter(torch.randn(out, c, 3, 3))
        self.g = nn.Parameter(torch.rand(out) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.v * (self.g / self.v.flatten(1).norm(dim=1)).view(-1, 1, 1, 1)
        return F.conv2d(x, w, padding=1)


class WhereGate(nn.Module):
    """torch.where(x > 0, x, x * alpha) with a per-channel parameter."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.rand(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x > 0, x, x * self.alpha)


class TopK(nn.Module):
    """The k largest channels (an op prunec has no rule for)."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.topk(self.k, dim=1).values


class Lstm(nn.Module):
    """nn.LSTM over a (B, T, D) sequence."""

    def __init__(self, d: int, out: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(d, out, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm(x)[0]


class TiedAutoencoder(nn.Module):
    """relu(x W^T) W: one parameter used as encoder and (transposed) decoder."""

    def __init__(self, d: int, hidden: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(hidden, d) / math.sqrt(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + F.linear(torch.relu(F.linear(x, self.w)), self.w.t())


class SplitInt(nn.Module):
    """x.split(size, dim=1): many parts (the last one shorter), each through its own 1x1 conv, then cat."""

    def __init__(self, c: int, size: int, each: int) -> None:
        super().__init__()
        self.size = size
        widths = [min(size, c - i) for i in range(0, c, size)]
        self.convs = nn.ModuleList(nn.Conv2d(w, each, 1) for w in widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([conv(p) for conv, p in zip(self.convs, x.split(self.size, dim=1), strict=True)], 1)


class Chunk3(nn.Module):
    """x.chunk(3, dim=1) (unequal parts when 3 does not divide C), parts scaled and re-joined."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = x.chunk(3, dim=1)
        return torch.cat([p * (i + 1) for i, p in enumerate(parts)], 1)


class Unpool(nn.Module):
    """max_pool2d with indices, then max_unpool2d back to the input size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, idx = F.max_pool2d(x, 2, return_indices=True)
        return F.max_unpool2d(y, idx, 2, output_size=x.shape[-2:])


class Cast(nn.Module):
    """A round trip through float64 and back (casts in the middle of a model)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.double() * 1.5).to(x.dtype)


class Mha(nn.Module):
    """nn.MultiheadAttention (fused in-projection weight) as a residual block."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attn(x, x, x, need_weights=False)[0]


class Gru(nn.Module):
    """nn.GRU over a (B, T, D) sequence."""

    def __init__(self, d: int, out: int) -> None:
        super().__init__()
        self.gru = nn.GRU(d, out, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gru(x)[0]
