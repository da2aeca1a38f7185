"""Head-dim groups on request; RoPE pairs (rotate-half i <-> i+d/2, interleaved 2i <-> 2i+1) from ops."""

import numpy as np
import pytest
import torch
from prunec.zoo import ZOO
from prunec.zoo.llama import build_llama, token_ids

import prunec
from tests.helpers import assert_prunes_equivalently


def qk_group(analysis):
    """The group holding layer 0's q_proj rows."""
    return next(g for g in analysis.groups
                if any(m.param == "layers.0.attn.q_proj.weight" and m.dim == 0 for m in g.members))


def q_channels(group):
    """Layer 0's q_proj rows and the group channel of each."""
    member, chan = next((m, c) for m, c in zip(group.members, group.channel_of, strict=True)
                        if m.param == "layers.0.attn.q_proj.weight" and m.dim == 0)
    rows = np.asarray(member.indices)
    return rows, chan


def test_heads_mode_has_no_head_dim_groups():
    """By default reshapes carry whole heads; no head-dim group appears."""
    kinds = {g.kind for g in prunec.analyze(build_llama(), token_ids()).groups}
    assert kinds == {"heads", "mlp", "hidden"}


@pytest.mark.parametrize(("rope", "partner"),
                         [("half", lambda i: (i + 4) % 8), ("interleaved", lambda i: i ^ 1)])
def test_rope_pairs_come_from_the_graph(rope, partner):
    """In head-dim mode a q/k channel is a RoPE pair of dims, the same in every head and layer."""
    analysis = prunec.analyze(build_llama(rope=rope), token_ids(), attention="head_dim")
    group = qk_group(analysis)
    assert group.kind == "head_dim"
    assert group.channel_count == 4  # 8 dims = 4 pairs
    rows, chan = q_channels(group)
    dim_of = rows % 8
    for c in range(4):
        dims = set(dim_of[chan == c].tolist())
        assert len(dims) == 2 and {partner(d) for d in dims} == dims
    assert any(m.param == "rotary.inv_freq" for m in group.members)  # the frequencies go with their pair
    assert any(m.param == "layers.1.attn.k_proj.weight" for m in group.members)  # shared tables tie layers


@pytest.mark.parametrize("rope", ["half", "interleaved"])
def test_head_dim_pruning_runs_as_own_class(rope):
    """q/k pairs and v dims removed; head_dim follows; the softmax scale stays the original one."""
    model = build_llama(rope=rope)
    result = assert_prunes_equivalently(model, token_ids(), ratio=0.5, attention="head_dim",
                                        kinds=("head_dim",), expect_output="module")
    attn = result.model.layers[0].attn
    assert attn.head_dim == 4 and attn.num_heads == 6
    assert attn.scale == 8 ** -0.5
    assert result.model.rotary.inv_freq.shape == (2,)


def test_sdpa_default_scale_is_kept_in_graph_module():
    """char_gpt calls SDPA without a scale: after head-dim pruning the GraphModule pins 1/sqrt(16)."""
    entry = ZOO["char_gpt"]
    model = entry.build()
    result = prunec.prune(model, entry.example_inputs(), ratio=0.5, attention="head_dim", kinds="head_dim",
                          output="graph_module")
    scales = [n.kwargs.get("scale") for n in result.model.graph.nodes
              if n.op == "call_function" and "scaled_dot_product_attention" in str(n.target)]
    assert scales and all(s == pytest.approx(16 ** -0.5) for s in scales)
    assert result.verification.passed


def test_head_dim_mode_pins_heads():
    """Asking for head dims gives no head groups (a reshape carries one or the other)."""
    kinds = {g.kind for g in prunec.analyze(ZOO["vit"].build(), ZOO["vit"].example_inputs(),
                                             attention="head_dim").groups}
    assert "heads" not in kinds and "head_dim" in kinds


def test_unknown_attention_mode_is_an_input_error():
    """attention= takes 'heads' or 'head_dim'."""
    with pytest.raises(prunec.InputError, match=r"attention='dims'; use 'heads'"):
        prunec.analyze(build_llama(), token_ids(), attention="dims")


def test_removing_a_rope_pair_zeroes_both_dims():
    """Channel 0 of the q/k group is dims 0 and 4 of every head: both rows go, the next pair stays."""
    model = build_llama(layers=1)
    analysis = prunec.analyze(model, token_ids(), attention="head_dim")
    removed = [qk_group(analysis).select([0])]
    zeroed = prunec.zeroed_copy(model, removed)
    with torch.no_grad():
        q = zeroed.layers[0].attn.q_proj.weight.view(6, 8, -1)
    assert torch.count_nonzero(q[:, [0, 4]]) == 0 and torch.count_nonzero(q[:, [1, 5]]) > 0


def test_no_tensor_axis_is_emptied():
    """GPT-2's fused c_attn puts q/k dims and v dims in one group: a low-scoring set is never taken whole."""
    entry = ZOO["gpt2"]
    result = prunec.prune(entry.build(), entry.example_inputs(), ratio=0.5, attention="head_dim",
                          kinds="head_dim")
    analysis = result.analysis
    shapes = analysis.new_shapes(analysis.keep_mask({g.group_id: g.channels for g in result.removed}))
    emptied = [v.name for v in analysis.graph.values() if 0 in shapes[v.name] and 0 not in v.shape]
    assert not emptied
    assert sum(len(g.channels) for g in result.removed) >= 14 and result.verification.passed
