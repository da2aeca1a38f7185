"""HuggingFace transformers models from small random configs: pruned with no sizes or fix-ups."""

import pytest
import torch

pytest.importorskip("transformers")

from prunec.zoo.external import HF_CASES

import prunec
from tests.helpers import assert_prunes_equivalently


def logits(model, x):
    """The model's main output tensor."""
    out = model(**x)
    return out.logits if hasattr(out, "logits") else out[0]


@pytest.mark.parametrize("name", sorted(HF_CASES))
def test_hf_model_prunes_every_kind_as_its_own_class(name):
    """Heads, MLP and hidden at 0.5: same class, verified, same output shape, about 1/3 of the weights."""
    model, x = HF_CASES[name].build()
    with torch.no_grad():
        want = logits(model, x).shape
    result = assert_prunes_equivalently(model, x, ratio=0.5, expect_output="module")
    assert type(result.model) is type(model)
    assert {g.kind for g in result.removed} == {"heads", "mlp", "hidden"}
    assert result.report.params_ratio < 0.4
    with torch.no_grad():
        assert logits(result.model, x).shape == want
    assert not [n for n in result.report.notes if "will not reload" in n], result.report.notes


@pytest.mark.parametrize("name", ["llama", "bert"])
def test_hf_heads_and_mlp_keep_the_literal_contract(name):
    """Zero-invariant kinds only: the zeroed original equals the pruned model (checked by the helper)."""
    model, x = HF_CASES[name].build()
    result = assert_prunes_equivalently(model, x, ratio=0.5, kinds=("heads", "mlp"), expect_output="module")
    assert result.removed and all(g.zero_invariant for g in result.removed)


@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_hf_save_and_reload(name, tmp_path):
    """save_pretrained / from_pretrained rebuild the pruned model: the config follows the new sizes."""
    model, x = HF_CASES[name].build()
    result = prunec.prune(model, x, ratio=0.5)
    result.model.save_pretrained(tmp_path)
    reloaded = type(model).from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.allclose(logits(reloaded, x), logits(result.model, x), atol=1e-6)
    cfg = reloaded.config
    assert cfg.num_attention_heads == 2 and cfg.hidden_size == 16


def test_hf_config_that_cannot_describe_the_result_is_reported():
    """BERT derives its head size as hidden / heads: pruning heads alone cannot be saved, and we say so."""
    model, x = HF_CASES["bert"].build()
    result = prunec.prune(model, x, ratio=0.5, kinds="heads")
    assert result.output_kind == "module"  # the model itself runs fine
    note = next(n for n in result.report.notes if "will not reload" in n)
    assert "attention.self.query.weight' as (32, 32), the pruned model has (16, 32)" in note


def test_albert_shared_layer_is_pruned_once():
    """ALBERT runs one layer twice: its weights are one set of channels, pruned once."""
    model, x = HF_CASES["albert"].build()
    result = prunec.prune(model, x, ratio=0.5, kinds=("mlp",))
    layer = result.model.albert.encoder.albert_layer_groups[0].albert_layers[0]
    assert layer.ffn.out_features == 24 and layer.ffn_output.in_features == 24
    assert len([g for g in result.removed if g.kind == "mlp" and "ffn.weight" in g.name]) == 1


def test_hf_llama_analysed_on_meta_matches_real_weights():
    """The same groups come out whether the weights are real or on the meta device."""
    model, x = HF_CASES["llama"].build()
    real = prunec.analyze(model, x)
    meta = prunec.analyze(model.to("meta"), {k: v.to("meta") for k, v in x.items()})
    assert [(g.kind, g.channel_count, g.members) for g in meta.groups] == \
           [(g.kind, g.channel_count, g.members) for g in real.groups]


def test_hf_multi_query_attention_keeps_its_kv_head(tmp_path):
    """Llama with one KV head: query heads go one by one, num_key_value_heads stays 1, and it reloads."""
    import transformers

    cfg = transformers.LlamaConfig(vocab_size=99, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                                   num_attention_heads=4, num_key_value_heads=1, use_cache=False)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).eval()
    x = HF_CASES["llama"].build()[1]
    result = prunec.prune(model, x, ratio=0.5, kinds="heads")
    assert (result.model.config.num_attention_heads, result.model.config.num_key_value_heads) == (2, 1)
    result.model.save_pretrained(tmp_path)
    reloaded = type(model).from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.allclose(logits(reloaded, x), logits(result.model, x), atol=1e-6)
