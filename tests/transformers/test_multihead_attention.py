"""nn.MultiheadAttention: heads folded into the batch axis are found, and the pruned module still runs."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

import prunec
from prunec.rewrite.attention_fixers import PrunedMultiheadAttention
from prunec.rules.families import common_factors
from tests.helpers import assert_prunes_equivalently


def test_common_factors_of_a_split_and_merge():
    """(B, E) -> (B*H, D) shares B, H and D; (6, 4) -> (4, 6) shares nothing."""
    assert common_factors([2, 32], [8, 8]) == [2, 4, 8]
    assert common_factors([5, 8, 4], [10, 16]) == [5, 2, 4, 4]
    assert common_factors([6, 4], [4, 6]) is None


class Attend(nn.Module):
    """nn.MultiheadAttention with a padding mask, returning weights too, then a classifier."""

    def __init__(self, dim: int = 16, heads: int = 4, need_weights: bool = True) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.fc = nn.Linear(dim, 3)
        self.need_weights = need_weights

    def forward(self, x, mask):
        """Attend over x with the padding mask, pool, classify."""
        y, _ = self.attn(x, x, x, key_padding_mask=mask, need_weights=self.need_weights)
        return self.fc(y.mean(1))


def inputs():
    """Tokens (2, 5, 16) and a padding mask hiding the last two keys of the second sequence."""
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[1, 3:] = True
    return torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(1)), mask


@pytest.mark.parametrize("need_weights", [True, False])
def test_heads_found_through_the_batch_axis(need_weights):
    """(T, B, E) -> (T, B*H, D): one head group of 4 channels, each 4 rows of q, k and v."""
    model = Attend(need_weights=need_weights).eval()
    group = next(g for g in prunec.analyze(model, inputs()).groups if g.kind == "heads")
    assert group.channel_count == 4
    chan = next(c for m, c in zip(group.members, group.channel_of, strict=True)
                if m.param == "attn.in_proj_weight")
    assert np.array_equal(chan, (np.arange(48) % 16) // 4)


@pytest.mark.parametrize("kinds", [("heads",), None])
def test_pruned_attention_is_a_multihead_attention(kinds):
    """Inner width no longer equal to the embedding width: a PrunedMultiheadAttention, verified."""
    model = Attend().eval()
    result = assert_prunes_equivalently(model, inputs(), ratio=0.5, kinds=kinds, expect_output="module")
    attn = result.model.attn
    assert isinstance(attn, PrunedMultiheadAttention) and isinstance(attn, nn.MultiheadAttention)
    assert attn.num_heads == 2 and attn.embed_dim == (16 if kinds else 8)


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("need_weights", [True, False])
def test_pruned_class_computes_what_nn_multihead_attention_does(batch_first, need_weights):
    """With unchanged sizes the subclass gives nn.MultiheadAttention's outputs and weights."""
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(12, 3, batch_first=batch_first).eval()
    twin = copy.deepcopy(mha)
    twin.__class__ = PrunedMultiheadAttention
    twin.qk_head_dim = twin.v_head_dim = 4
    twin.scaling = 4 ** -0.5
    x = torch.randn(2, 6, 12) if batch_first else torch.randn(6, 2, 12)
    pad = torch.zeros(2, 6, dtype=torch.bool)
    pad[0, 4:] = True
    causal = torch.ones(6, 6, dtype=torch.bool).triu(1)
    with torch.no_grad():
        want = mha(x, x, x, key_padding_mask=pad, attn_mask=causal, need_weights=need_weights)
        got = twin(x, x, x, key_padding_mask=pad, attn_mask=causal, need_weights=need_weights)
    assert torch.allclose(got[0], want[0], atol=1e-6)
    if need_weights:
        assert torch.allclose(got[1], want[1], atol=1e-6)


def test_torchvision_vit_prunes_heads_with_batch_two():
    """Torchvision's ViT (nn.MultiheadAttention inside) at batch 2 prunes heads as its own class."""
    tv = pytest.importorskip("torchvision.models.vision_transformer")
    model = tv.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=32,
                                 mlp_dim=64, num_classes=10).eval()
    result = assert_prunes_equivalently(model, torch.randn(2, 3, 32, 32), ratio=0.5, expect_output="module")
    attn = result.model.encoder.layers[0].self_attention
    assert (attn.num_heads, attn.embed_dim, result.model.hidden_dim) == (2, 16, 16)
    assert "heads" in {g.kind for g in result.removed}


def test_unsupported_multihead_attention_options_are_noted():
    """add_bias_kv is not rewritten: the report says so, and the verified GraphModule comes back."""
    model = Attend(need_weights=False).eval()
    model.attn = nn.MultiheadAttention(16, 4, batch_first=True, add_bias_kv=True).eval()
    result = prunec.prune(model, inputs(), ratio=0.5, kinds="heads")
    assert any("add_bias_kv/add_zero_attn is not rewritten" in n for n in result.report.notes)
    assert result.verification.passed
