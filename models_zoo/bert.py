"""A BERT-style encoder with a classification head: word/position/token-type embeddings, post-LN
layers with explicit matmul -> softmax -> matmul attention under a padding mask, GELU intermediate,
a tanh pooler on the first token, a linear classifier. Keyword inputs (`input_ids`, `attention_mask`).

(A bare encoder returns its hidden states, which pins the hidden size: a task head frees it.)
"""

from __future__ import annotations

import torch
from prunec.zoo.registry import register
from torch import nn
from torch.nn import functional as F


class SelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.num_attention_heads = heads
        self.attention_head_size = hidden // heads
        self.all_head_size = heads * self.attention_head_size
        self.scale = self.attention_head_size ** -0.5
        self.query = nn.Linear(hidden, self.all_head_size)
        self.key = nn.Linear(hidden, self.all_head_size)
        self.value = nn.Linear(hidden, self.all_head_size)

    def _heads(self, x, b, t):
        return x.view(b, t, self.num_attention_heads, -1).transpose(1, 2)

    def forward(self, x, mask):
        b, t, _ = x.shape
        q = self._heads(self.query(x), b, t)
        k = self._heads(self.key(x), b, t)
        v = self._heads(self.value(x), b, t)
        scores = q @ k.transpose(-1, -2) * self.scale + mask
        context = scores.softmax(-1) @ v
        return context.transpose(1, 2).reshape(b, t, -1)


class Layer(nn.Module):
    def __init__(self, hidden: int, heads: int, intermediate: int) -> None:
        super().__init__()
        self.attention = SelfAttention(hidden, heads)
        self.attention_output = nn.Linear(hidden, hidden)
        self.attention_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.intermediate = nn.Linear(hidden, intermediate)
        self.output = nn.Linear(intermediate, hidden)
        self.output_norm = nn.LayerNorm(hidden, eps=1e-12)

    def forward(self, x, mask):
        x = self.attention_norm(x + self.attention_output(self.attention(x, mask)))
        return self.output_norm(x + self.output(F.gelu(self.intermediate(x))))


class BertClassifier(nn.Module):
    """Embeddings + LayerNorm, `layers` post-LN layers, pooler on the first token, classifier."""

    def __init__(self, vocab: int = 100, hidden: int = 32, layers: int = 2, heads: int = 4,
                 intermediate: int = 64, max_positions: int = 32, num_labels: int = 3) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, hidden)
        self.position_embeddings = nn.Embedding(max_positions, hidden)
        self.token_type_embeddings = nn.Embedding(2, hidden)
        self.embeddings_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.layers = nn.ModuleList(Layer(hidden, heads, intermediate) for _ in range(layers))
        self.pooler = nn.Linear(hidden, hidden)
        self.classifier = nn.Linear(hidden, num_labels)

    def forward(self, input_ids, attention_mask):
        t = input_ids.shape[1]
        positions = torch.arange(t, device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)
        x = self.embeddings_norm(x + self.token_type_embeddings(torch.zeros_like(input_ids)))
        mask = (1.0 - attention_mask[:, None, None, :].float()) * -10000.0
        for layer in self.layers:
            x = layer(x, mask)
        return self.classifier(torch.tanh(self.pooler(x[:, 0])))


def bert_inputs(batch: int = 2, length: int = 10, vocab: int = 100) -> dict[str, torch.Tensor]:
    """Token ids and a padding mask (the second sequence is padded after 7 tokens)."""
    gen = torch.Generator().manual_seed(1)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[1, 7:] = 0
    return {"input_ids": torch.randint(0, vocab, (batch, length), generator=gen), "attention_mask": mask}


@register("bert", "bert", bert_inputs, covers=("explicit matmul-softmax attention", "padding mask",
                                              "post-LN", "keyword inputs", "pooler"))
def bert() -> nn.Module:
    """A two-layer BERT-style classifier (hidden 32, 4 heads, intermediate 64)."""
    return BertClassifier()
