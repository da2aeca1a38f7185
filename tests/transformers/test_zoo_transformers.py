"""Every zoo transformer prunes heads, MLP width and hidden size, each alone, as its own class."""

import pytest
from prunec.zoo import ZOO

import prunec
from tests.helpers import assert_prunes_equivalently

TRANSFORMERS = ["vit", "bert", "gpt2", "llama", "mixer", "swin", "char_gpt"]
KINDS = [("heads",), ("mlp",), ("hidden",)]  # all together: below, and at 3 ratios in tests/zoo


CASES = [(n, k) for n in TRANSFORMERS for k in KINDS if not (n == "mixer" and k == ("heads",))]


@pytest.mark.parametrize(("name", "kinds"), CASES, ids=[f"{n}-{k[0]}" for n, k in CASES])
def test_zoo_transformer_prunes_each_kind(name, kinds):
    """No sizes or fix-ups given: the same class comes back, verified, smaller by exactly what was removed."""
    entry = ZOO[name]
    model = entry.build()
    result = assert_prunes_equivalently(model, entry.example_inputs(), ratio=0.5, kinds=kinds,
                                        expect_output="module")
    assert type(result.model) is type(model)
    assert result.removed, result.report
    assert result.report.params_after < result.report.params_before
    assert {g.kind for g in result.removed} == set(kinds)


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_zoo_transformer_prunes_every_kind_together(name):
    """All kinds at once: heads, MLP and hidden (MLP-Mixer: no heads) all lose channels, verified."""
    entry = ZOO[name]
    model = entry.build()
    result = assert_prunes_equivalently(model, entry.example_inputs(), ratio=0.5, expect_output="module")
    assert type(result.model) is type(model)
    assert {g.kind for g in result.analysis.groups} == {g.kind for g in result.removed}
    every = {"mlp", "hidden"} if name == "mixer" else {"heads", "mlp", "hidden"}
    assert {g.kind for g in result.removed} == every


def test_zoo_transformers_are_same_class_entries():
    """The zoo declares every transformer as pruned into its own class."""
    assert all(ZOO[n].same_class for n in TRANSFORMERS)


def test_attribute_updates_reach_every_layer():
    """After pruning heads and hidden size, each attention module holds its new head count and widths."""
    entry = ZOO["gpt2"]
    result = prunec.prune(entry.build(), entry.example_inputs(), ratio=0.5)
    for block in result.model.h:
        attn = block.attn
        assert attn.n_head == 2
        assert attn.split_size == attn.n_head * attn.head_dim == attn.c_attn.out_features // 3
    assert result.model.lm_head.weight is result.model.wte.weight  # still tied
    assert result.model.wte.weight.shape == (100, 16)
