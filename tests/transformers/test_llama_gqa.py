"""Grouped-query attention: a KV head goes only with all its query heads, at every heads/KV ratio."""

import numpy as np
import pytest
from prunec.zoo.llama import build_llama, token_ids

import prunec
from tests.helpers import assert_prunes_equivalently

RATIOS = [(6, 2), (4, 2), (8, 1), (12, 4), (8, 8)]


def head_group(analysis, layer=0):
    """The heads group holding a layer's q_proj rows."""
    return next(g for g in analysis.groups if g.kind == "heads"
                and any(m.param == f"layers.{layer}.attn.q_proj.weight" for m in g.members))


@pytest.mark.parametrize(("heads", "kv"), [r for r in RATIOS if r[1] > 1], ids=lambda v: str(v))
def test_head_groups_follow_kv_heads(heads, kv):
    """One channel per KV head, holding its k/v rows, its query heads' q rows and their o_proj columns."""
    model = build_llama(heads=heads, kv_heads=kv, layers=1)
    group = head_group(prunec.analyze(model, token_ids()))
    assert group.channel_count == kv
    d, rep = 8, heads // kv
    by_param = {m.param: (m, ch) for m, ch in zip(group.members, group.channel_of, strict=True)}
    for param, per_channel in (("q_proj", rep * d), ("k_proj", d), ("v_proj", d), ("o_proj", rep * d)):
        member, chan = by_param[f"layers.0.attn.{param}.weight"]
        assert member.dim == (1 if param == "o_proj" else 0)
        assert np.array_equal(chan, np.asarray(member.indices) // per_channel)


def test_multi_query_heads_are_single_query_heads():
    """8/1: the one KV head is broadcast (expand) to every query head, so query heads go one by one."""
    group = head_group(prunec.analyze(build_llama(heads=8, kv_heads=1, layers=1), token_ids()))
    assert group.channel_count == 8
    assert {m.param for m in group.members} == {"layers.0.attn.q_proj.weight", "layers.0.attn.o_proj.weight"}
    q = next(c for m, c in zip(group.members, group.channel_of, strict=True)
             if m.param.endswith("q_proj.weight"))
    assert np.array_equal(q, np.arange(64) // 8)


@pytest.mark.parametrize(("heads", "kv"), RATIOS, ids=lambda v: str(v))
def test_gqa_prunes_as_own_class(heads, kv):
    """Heads, MLP and hidden pruned together; the attributes follow; verification passes."""
    model = build_llama(heads=heads, kv_heads=kv)
    result = assert_prunes_equivalently(model, token_ids(), ratio=0.5, expect_output="module")
    attn = result.model.layers[0].attn
    kept_kv = kv - kv // 2
    kept_heads = heads // 2 if kv == 1 else kept_kv * (heads // kv)
    assert (attn.num_kv_heads, attn.num_heads) == (kept_kv, kept_heads)
    assert attn.k_proj.out_features == kept_kv * attn.head_dim
    assert attn.q_proj.out_features == attn.num_heads * attn.head_dim


def test_multi_query_prunes_query_heads_and_keeps_the_kv_head():
    """8/1: half the query heads go; k/v keep their single head; the module repeats it 4 times."""
    result = prunec.prune(build_llama(heads=8, kv_heads=1), token_ids(), ratio=0.5, kinds="heads")
    attn = result.model.layers[0].attn
    assert (attn.num_heads, attn.num_kv_heads) == (4, 1)
    assert attn.k_proj.out_features == 8 and attn.q_proj.out_features == 32
    assert result.output_kind == "module" and result.verification.passed
