"""A GPT-2-style decoder: token + learned position embeddings, pre-LN blocks with one fused c_attn
projection split into q/k/v, explicit causal attention under a lower-triangular mask buffer,
tanh-GELU MLP, final LayerNorm, LM head tied to the token embedding.
"""

from __future__ import annotations

import torch
from prunec.zoo.registry import register
from torch import nn
from torch.nn import functional as F


class Attention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, n_positions: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.head_dim = n_embd // n_head
        self.split_size = n_head * self.head_dim
        self.scale = self.head_dim ** -0.5
        self.c_attn = nn.Linear(n_embd, 3 * self.split_size)
        self.c_proj = nn.Linear(self.split_size, n_embd)
        causal = torch.tril(torch.ones(n_positions, n_positions, dtype=torch.bool))
        self.register_buffer("bias", causal[None, None], persistent=False)

    def forward(self, x):
        b, t, _ = x.shape
        q, k, v = self.c_attn(x).split(self.split_size, dim=2)
        q, k, v = (z.view(b, t, self.n_head, -1).transpose(1, 2) for z in (q, k, v))
        w = q @ k.transpose(-1, -2) * self.scale
        w = torch.where(self.bias[:, :, :t, :t], w, torch.finfo(w.dtype).min)
        y = w.softmax(-1) @ v
        return self.c_proj(y.transpose(1, 2).reshape(b, t, -1))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, n_positions: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = Attention(n_embd, n_head, n_positions)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.c_fc = nn.Linear(n_embd, 4 * n_embd)
        self.c_proj = nn.Linear(4 * n_embd, n_embd)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.c_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT2(nn.Module):
    """wte + wpe, `layers` blocks, ln_f, lm_head (weight shared with wte)."""

    def __init__(self, vocab: int = 100, n_embd: int = 32, layers: int = 2, n_head: int = 4,
                 n_positions: int = 32) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, n_embd)
        self.wpe = nn.Embedding(n_positions, n_embd)
        self.h = nn.ModuleList(Block(n_embd, n_head, n_positions) for _ in range(layers))
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, input_ids):
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.wte(input_ids) + self.wpe(positions)
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def gpt2_inputs() -> torch.Tensor:
    """Random token ids (2 x 12)."""
    return torch.randint(0, 100, (2, 12), generator=torch.Generator().manual_seed(1))


@register("gpt2", "gpt", gpt2_inputs, covers=("fused c_attn split", "causal mask buffer", "tied LM head",
                                              "learned positions"))
def gpt2() -> nn.Module:
    """A two-layer GPT-2-style decoder (n_embd 32, 4 heads) with a tied LM head."""
    return GPT2()
