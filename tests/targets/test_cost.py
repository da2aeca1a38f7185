"""MACs and parameter counts on the IR: functional matmuls and attention count, per hand formulas."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import prunec
from prunec.analysis.cost import graph_macs, graph_params


def macs_of(model: nn.Module, *inputs) -> int:
    """MACs of a model as prunec counts them."""
    return graph_macs(prunec.analyze(model.eval(), inputs).graph)


def hooked_macs(model: nn.Module, x: torch.Tensor) -> int:
    """An independent count from module hooks: convs and linears only."""
    total = 0

    def conv(m, inp, out):
        nonlocal total
        total += out.numel() * (m.in_channels // m.groups) * int(torch.tensor(m.kernel_size).prod())

    def linear(m, inp, out):
        nonlocal total
        total += out.numel() * m.in_features
    hooks = [m.register_forward_hook(conv) for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_hook(linear) for m in model.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        model.eval()(x)
    for h in hooks:
        h.remove()
    return total


class Functional(nn.Module):
    """Matmuls written as functions of activations, not modules."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(16, 8))

    def forward(self, x):  # x: (2, 5, 8)
        a = x @ self.w.T  # matmul: 2*5*16 outputs x 8
        b = torch.bmm(a, a.transpose(1, 2))  # bmm: 2*5*5 outputs x 16
        c = torch.einsum("...ij,...jk->...ik", b, a)  # 2*5*16 outputs x 5
        return F.linear(c, self.w.T)  # (2,5,16) @ (16,8): 2*5*8 outputs x 16


def test_functional_matmuls_count():
    """X @ W, bmm, an ellipsis einsum and F.linear each count outputs x contracted size."""
    expected = 2 * 5 * 16 * 8 + 2 * 5 * 5 * 16 + 2 * 5 * 16 * 5 + 2 * 5 * 8 * 16
    assert macs_of(Functional(), torch.randn(2, 5, 8)) == expected


class Attention(nn.Module):
    """Grouped-query attention through scaled_dot_product_attention."""

    def __init__(self) -> None:
        super().__init__()
        self.q = nn.Linear(32, 32)
        self.kv = nn.Linear(32, 32)

    def forward(self, x):  # (2, 7, 32): 4 query heads share 2 key/value heads, head size 8
        q = self.q(x).view(2, 7, 4, 8).transpose(1, 2)
        k, v = self.kv(x).view(2, 7, 2, 16).transpose(1, 2).chunk(2, dim=-1)
        k, v = k.repeat_interleave(2, 1), v.repeat_interleave(2, 1)
        return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(2, 7, 32)


def test_attention_counts_both_products():
    """Scores q.k (B*H*T*T x d_k) and the weighted sum with v (B*H*T*T x d_v), plus projections."""
    projections = 2 * 7 * 32 * 32 + 2 * 7 * 32 * 32
    attention = 2 * 4 * 7 * 7 * 8 + 2 * 4 * 7 * 7 * 8
    assert macs_of(Attention(), torch.randn(2, 7, 32)) == projections + attention


def test_convolutions_match_an_independent_count():
    """Strided, grouped, depthwise and transposed convs: out elements x (in/groups) x kernel."""
    model = nn.Sequential(nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.Conv2d(8, 8, 3, padding=1, groups=8),
                          nn.Conv2d(8, 12, 1, groups=4), nn.ConvTranspose2d(12, 6, 2, stride=2))
    x = torch.randn(1, 4, 16, 16)
    transposed = 1 * 12 * 8 * 8 * 6 * 2 * 2  # each input element feeds out x kernel
    assert macs_of(model, x) == hooked_macs(model[:3], x) + transposed


def test_torchvision_models_match_published_counts():
    """ResNet-18 and MobileNetV2 at 224x224: the hook count and the published 1.81G / 0.30G MACs."""
    torchvision = pytest.importorskip("torchvision")
    x = torch.randn(1, 3, 224, 224)
    published = ((torchvision.models.resnet18, 1.814e9), (torchvision.models.mobilenet_v2, 0.3008e9))
    for build, macs in published:
        model = build()
        counted = macs_of(model, x)
        assert counted == hooked_macs(model, x)
        assert counted == pytest.approx(macs, rel=2e-3)


def test_vision_transformer_counts_attention():
    """A small torchvision ViT: module hooks miss the attention products; the IR count has them."""
    pytest.importorskip("torchvision")
    from torchvision.models.vision_transformer import VisionTransformer

    model = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16,
                              mlp_dim=32)
    x = torch.randn(1, 3, 32, 32)
    tokens = 4 * 4 + 1
    # nn.MultiheadAttention's in/out projections run as functional linears inside the module
    proj = 2 * (tokens * 16 * 48 + tokens * 16 * 16)
    attention = 2 * 2 * (tokens * tokens * 8) * 2
    assert macs_of(model, x) == hooked_macs(model, x) + proj + attention


def test_params_count_tied_weights_once():
    """The char-GPT ties its LM head to the embedding: the IR counts that tensor once."""
    from prunec.zoo import ZOO

    entry = ZOO["char_gpt"]
    model = entry.build()
    assert graph_params(prunec.analyze(model, entry.example_inputs()).graph) == prunec.count_params(model)
