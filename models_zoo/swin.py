"""A Swin-style transformer: window partitioning by view/permute, window attention with a relative
position bias table indexed by a buffer, shifted windows (roll + attention mask), patch merging
(strided slices + concat + LayerNorm + reduction), mean-pooled head.
"""

from __future__ import annotations

import torch
from prunec.zoo.registry import image, register
from prunec.zoo.vit import Attention
from torch import nn
from torch.nn import functional as F


def window_partition(x, ws: int):
    """(B, H, W, C) -> (B * H/ws * W/ws, ws*ws, C)."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, c)


def window_reverse(windows, ws: int, h: int, w: int):
    """(B * H/ws * W/ws, ws*ws, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    x = windows.view(-1, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


def relative_position_index(ws: int) -> torch.Tensor:
    """(ws*ws, ws*ws) index into a (2ws-1)^2 bias table: the offset between two window positions."""
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)
    return rel[..., 0] * (2 * ws - 1) + rel[..., 1]


class WindowAttention(Attention):
    """ViT's fused-qkv attention inside a window, plus a relative position bias per head."""

    def __init__(self, dim: int, num_heads: int, ws: int) -> None:
        super().__init__(dim, num_heads)
        self.relative_position_bias_table = nn.Parameter(torch.randn((2 * ws - 1) ** 2, num_heads) * 0.02)
        self.register_buffer("relative_position_index", relative_position_index(ws), persistent=False)

    def forward(self, x, mask=None):
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attn = attn + bias.view(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            windows = mask.shape[0]
            attn = attn.view(b // windows, windows, -1, n, n) + mask[None, :, None]
            attn = attn.view(b, -1, n, n)
        y = attn.softmax(-1) @ v
        return self.proj(y.transpose(1, 2).reshape(b, n, -1))


def shift_mask(h: int, w: int, ws: int, shift: int) -> torch.Tensor:
    """(windows, ws*ws, ws*ws) additive mask keeping attention inside each shifted region."""
    region = torch.zeros(1, h, w, 1)
    cnt = 0
    for hs in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
        for wsl in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
            region[:, hs, wsl, :] = cnt
            cnt += 1
    ids = window_partition(region, ws).squeeze(-1)
    diff = ids[:, None, :] - ids[:, :, None]
    return torch.zeros(diff.shape).masked_fill(diff != 0, -100.0)


class SwinBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, resolution: int, ws: int, shift: int) -> None:
        super().__init__()
        self.ws = min(ws, resolution)
        self.shift = 0 if resolution <= ws else shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, self.ws)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 2 * dim)
        self.fc2 = nn.Linear(2 * dim, dim)
        mask = shift_mask(resolution, resolution, self.ws, self.shift) if self.shift else None
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, x):
        _, h, w, _ = x.shape
        y = self.norm1(x)
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), dims=(1, 2))
        y = window_reverse(self.attn(window_partition(y, self.ws), self.attn_mask), self.ws, h, w)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), dims=(1, 2))
        x = x + y
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class PatchMerging(nn.Module):
    """(B, H, W, C) -> (B, H/2, W/2, 2C): the four pixels of each 2x2 cell side by side."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x):
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class Swin(nn.Module):
    """Patch embedding, a stage of regular + shifted window blocks, patch merging, a second stage."""

    def __init__(self, image_size: int = 32, patch: int = 4, dim: int = 16, heads: tuple[int, int] = (2, 4),
                 ws: int = 4, num_classes: int = 10) -> None:
        super().__init__()
        res = image_size // patch
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.embed_norm = nn.LayerNorm(dim)
        self.stage1 = nn.Sequential(SwinBlock(dim, heads[0], res, ws, 0),
                                    SwinBlock(dim, heads[0], res, ws, ws // 2))
        self.merge = PatchMerging(dim)
        self.stage2 = nn.Sequential(SwinBlock(2 * dim, heads[1], res // 2, ws, 0))
        self.norm = nn.LayerNorm(2 * dim)
        self.head = nn.Linear(2 * dim, num_classes)

    def forward(self, x):
        x = self.embed_norm(self.patch_embed(x).permute(0, 2, 3, 1))
        x = self.stage2(self.merge(self.stage1(x)))
        return self.head(self.norm(x).mean((1, 2)))


@register("swin", "swin", image(),
          covers=("window partition", "shifted windows", "relative position bias table", "patch merging"))
def swin() -> nn.Module:
    """A two-stage Swin on 32x32 images (8x8 tokens, window 4, heads 2 and 4)."""
    return Swin()
