"""A Llama-style decoder: grouped-query attention, rotary position embeddings, SwiGLU MLP, RMSNorm.

Written the way common Llama ports are: one q/k/v/o projection per layer, `repeat_kv` by
expand + reshape, rotate-half RoPE (or the interleaved pair form) from a cached frequency buffer,
an untied LM head. Sizes are read from the module attributes `num_heads`, `num_kv_heads` and
`head_dim`, which prunec updates after pruning.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from prunec.zoo.registry import register
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class LlamaConfig:
    """Sizes of a Llama-style decoder."""

    vocab: int = 128
    hidden: int = 48
    layers: int = 2
    heads: int = 6
    kv_heads: int = 2
    head_dim: int = 8
    intermediate: int = 96
    rope: str = "half"
    """'half' (rotate-half, i <-> i + d/2) or 'interleaved' (pairs 2i <-> 2i + 1)."""
    rope_base: float = 10000.0
    max_positions: int = 64


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight over the last axis."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Rotary(nn.Module):
    """cos/sin tables for positions 0..T-1, from a persistent frequency buffer (so head-dim
    pruning can slice it; a non-persistent one would pin the q/k head dims).
    """

    def __init__(self, head_dim: int, base: float, interleaved: bool) -> None:
        super().__init__()
        self.interleaved = interleaved
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq)

    def forward(self, positions):
        freqs = positions.float()[:, None] * self.inv_freq[None, :]  # (T, D/2)
        if self.interleaved:
            emb = torch.stack((freqs, freqs), dim=-1).flatten(-2)  # (T, D): f0 f0 f1 f1 ...
        else:
            emb = torch.cat((freqs, freqs), dim=-1)  # (T, D): f0 f1 ... f0 f1 ...
        return emb.cos(), emb.sin()


def rotate_half(x):
    """(x1, x2) -> (-x2, x1) over the two halves of the last axis."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rotate_pairs(x):
    """(x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...): the interleaved (GPT-J) form."""
    pairs = x.unflatten(-1, (-1, 2))
    return torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)


def repeat_kv(x, n_rep: int):
    """(B, KV, T, D) -> (B, KV * n_rep, T, D): each KV head serves n_rep query heads."""
    if n_rep == 1:
        return x
    b, kv, t, d = x.shape
    return x[:, :, None].expand(b, kv, n_rep, t, d).reshape(b, kv * n_rep, t, d)


class Attention(nn.Module):
    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.num_heads = cfg.heads
        self.num_kv_heads = cfg.kv_heads
        self.head_dim = cfg.head_dim
        self.scale = cfg.head_dim ** -0.5
        self.interleaved = cfg.rope == "interleaved"
        self.q_proj = nn.Linear(cfg.hidden, cfg.heads * cfg.head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.hidden, cfg.kv_heads * cfg.head_dim, bias=False)
        self.v_proj = nn.Linear(cfg.hidden, cfg.kv_heads * cfg.head_dim, bias=False)
        self.o_proj = nn.Linear(cfg.heads * cfg.head_dim, cfg.hidden, bias=False)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.num_kv_heads, -1).transpose(1, 2)
        rotate = rotate_pairs if self.interleaved else rotate_half
        q = q * cos + rotate(q) * sin
        k = k * cos + rotate(k) * sin
        n_rep = self.num_heads // self.num_kv_heads
        k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, -1))


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden, cfg.intermediate, bias=False)
        self.up_proj = nn.Linear(cfg.hidden, cfg.intermediate, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate, cfg.hidden, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.input_norm = RMSNorm(cfg.hidden)
        self.attn = Attention(cfg)
        self.post_norm = RMSNorm(cfg.hidden)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin):
        x = x + self.attn(self.input_norm(x), cos, sin)
        return x + self.mlp(self.post_norm(x))


class Llama(nn.Module):
    """Token embedding, decoder layers, final RMSNorm, LM head."""

    def __init__(self, cfg: LlamaConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or LlamaConfig()
        if cfg.heads % cfg.kv_heads:
            raise ValueError(f"heads ({cfg.heads}) must be a multiple of kv_heads ({cfg.kv_heads})")
        self.embed = nn.Embedding(cfg.vocab, cfg.hidden)
        self.rotary = Rotary(cfg.head_dim, cfg.rope_base, cfg.rope == "interleaved")
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.layers))
        self.norm = RMSNorm(cfg.hidden)
        self.lm_head = nn.Linear(cfg.hidden, cfg.vocab, bias=False)

    def forward(self, input_ids):
        x = self.embed(input_ids)
        cos, sin = self.rotary(torch.arange(input_ids.shape[1], device=input_ids.device))
        for layer in self.layers:
            x = layer(x, cos, sin)
        return self.lm_head(self.norm(x))


def randomize_rms(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial RMSNorm weights, so that a wrong slice of them changes the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, RMSNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)


def build_llama(**sizes: object) -> Llama:
    """A Llama-style decoder with these LlamaConfig fields (random weights, eval mode)."""
    model = Llama(LlamaConfig(**sizes))  # type: ignore[arg-type]
    randomize_rms(model)
    return model.eval()


def token_ids(batch: int = 2, length: int = 12, vocab: int = 128):
    """Random token ids (deterministic)."""
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(1))


@register("llama", "llama", token_ids,
          covers=("grouped-query attention 6/2", "rotate-half RoPE", "SwiGLU", "RMSNorm", "LM head"))
def llama() -> nn.Module:
    """A two-layer Llama-style decoder: hidden 48, 6 query heads, 2 KV heads, head dim 8."""
    return build_llama()
