"""MLP-Mixer: patch embedding, then blocks of a token-mixing MLP (a Linear over the token axis,
reached by a transpose) and a channel-mixing MLP, each pre-LN with a residual; mean-pooled head.
"""

from __future__ import annotations

from prunec.zoo.registry import image, register
from prunec.zoo.vit import Mlp
from torch import nn


class MixerBlock(nn.Module):
    def __init__(self, dim: int, tokens: int, token_hidden: int, channel_hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.mlp_tokens = Mlp(tokens, token_hidden)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp_channels = Mlp(dim, channel_hidden)

    def forward(self, x):
        x = x + self.mlp_tokens(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.mlp_channels(self.norm2(x))


class MlpMixer(nn.Module):
    """Conv patch embedding, `depth` mixer blocks, LayerNorm, mean over tokens, linear head."""

    def __init__(self, image_size: int = 32, patch: int = 8, dim: int = 32, depth: int = 2,
                 token_hidden: int = 24, channel_hidden: int = 64, num_classes: int = 10) -> None:
        super().__init__()
        tokens = (image_size // patch) ** 2
        self.stem = nn.Conv2d(3, dim, patch, patch)
        self.blocks = nn.Sequential(*(MixerBlock(dim, tokens, token_hidden, channel_hidden)
                                      for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.stem(x).flatten(2).transpose(1, 2)
        x = self.norm(self.blocks(x))
        return self.head(x.mean(1))


@register("mixer", "mixer", image(),
          covers=("token-mixing MLP over the token axis", "channel MLP", "LayerNorm"))
def mixer() -> nn.Module:
    """A two-block MLP-Mixer on 32x32 images (16 tokens, dim 32)."""
    return MlpMixer()
