"""Size attributes get their new values measured in the pruned graph; what cannot be measured is said."""

import pytest
import torch
from prunec.zoo.llama import Llama, LlamaConfig, build_llama, token_ids
from torch import nn

import prunec
from prunec.rewrite import rewrite_module
from prunec.rewrite.attention_fixers import disagree, pick


def test_pick_prefers_the_axes_that_changed():
    """A token axis of the same old size never shrinks: the shrunk axes decide; two sizes is no answer."""
    assert pick({(8, 4), (8, 8)}, 8) == 4
    assert pick({(8, 8)}, 8) == 8
    assert pick({(16, 4)}, 8) is None
    assert pick({(8, 4), (8, 2)}, 8) is None and disagree({(8, 4), (8, 2)}, 8)
    assert not disagree({(8, 4), (8, 8)}, 8)


class TwoBranches(nn.Module):
    """Two MLP branches of the same width, and one attribute that names that width."""

    def __init__(self) -> None:
        super().__init__()
        self.intermediate_size = 8
        self.a1, self.a2 = nn.Linear(6, 8), nn.Linear(8, 6)
        self.b1, self.b2 = nn.Linear(6, 8), nn.Linear(8, 6)

    def forward(self, x):
        """Sum of the two branches."""
        return self.a2(torch.relu(self.a1(x))) + self.b2(torch.relu(self.b1(x)))


def test_an_attribute_whose_axes_shrank_differently_is_reported():
    """Branch a loses 2 channels, branch b 4: 'intermediate_size' has no single new value, and we say so."""
    model = TwoBranches().eval()
    analysis = prunec.analyze(model, torch.randn(3, 6))
    a, b = (next(g for g in analysis.groups if g.name == f"{n}1.weight[0]") for n in "ab")
    record = rewrite_module(model, analysis, analysis.keep_mask({a.id: [0, 1], b.id: [0, 1, 2, 3]}))
    assert model.intermediate_size == 8
    assert any("'TwoBranches.intermediate_size' = 8: axes of that size shrank to different sizes" in n
               for n in record.notes)


def test_measured_attributes_of_a_gqa_layer():
    """num_heads, num_kv_heads and head_dim of the Llama attention follow heads and head dims."""
    result = prunec.prune(build_llama(heads=8, kv_heads=4), token_ids(), ratio=0.5, kinds="heads")
    attn = result.model.layers[1].attn
    assert (attn.num_heads, attn.num_kv_heads, attn.head_dim) == (4, 2, 8)


def test_analysis_on_meta_tensors():
    """A model on the meta device is analysed from shapes alone; the groups are those of real weights."""
    cfg = LlamaConfig(layers=2, hidden=64, heads=8, kv_heads=2, head_dim=8, intermediate=128)
    torch.manual_seed(0)
    real = prunec.analyze(Llama(cfg).eval(), token_ids())
    with torch.device("meta"):
        meta_model = Llama(cfg).eval()
    meta = prunec.analyze(meta_model, token_ids().to("meta"))
    assert [(g.kind, g.members) for g in meta.groups] == [(g.kind, g.members) for g in real.groups]
    assert [g.channel_count for g in meta.groups if g.kind == "heads"] == [2, 2]


def test_pruning_on_meta_is_an_input_error():
    """prune() needs weight values: on the meta device it points to analyze()."""
    with torch.device("meta"):
        model = Llama(LlamaConfig(layers=1)).eval()
    with pytest.raises(prunec.InputError,
                       match=r"parameters on the meta device: prune\(\) needs their values"):
        prunec.prune(model, token_ids().to("meta"), ratio=0.5)
