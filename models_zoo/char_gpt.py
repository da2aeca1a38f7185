"""A character-level GPT (pre-LN decoder, tied embedding/LM head) for the text demos."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from prunec.zoo.registry import register


class CausalSelfAttention(nn.Module):
    """Fused qkv projection, `heads` heads of `head_dim`, causal SDPA, output projection."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, t, _ = x.shape
        inner = self.heads * self.head_dim
        q, k, v = self.qkv(x).split(inner, dim=2)
        q = q.view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = k.view(b, t, self.heads, self.head_dim).transpose(1, 2)
        v = v.view(b, t, self.heads, self.head_dim).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, inner))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, 4 * dim)
        self.out = nn.Linear(4 * dim, dim)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class CharGPT(nn.Module):
    """Token + learned position embeddings, pre-LN blocks, final LN, LM head tied to the embedding."""

    def __init__(self, vocab: int = 96, dim: int = 64, heads: int = 4, layers: int = 2, block: int = 64) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(block, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.tok.weight
        for name, p in self.named_parameters():
            if name.endswith("out.weight") or name.endswith("proj.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * layers))

    def forward(self, idx):
        t = idx.shape[1]
        x = self.tok(idx) + self.pos[:t]
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln(x))


def _example() -> torch.Tensor:
    return torch.randint(0, 96, (2, 32), generator=torch.Generator().manual_seed(1))


@register("char_gpt", "gpt", _example, covers=("attention heads", "tied LM head", "learned positions", "LayerNorm"))
def char_gpt() -> nn.Module:
    """A two-layer character GPT (dim 64, 4 heads)."""
    return CharGPT()
