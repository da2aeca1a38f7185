"""Small random-weight configs of HuggingFace transformers and timm models, for the integration
tests and `bench/transformers_coverage.py`. Nothing is downloaded: every model is built from a
config; `transformers`/`timm` are imported only when a case is built (they are optional).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class ExternalCase:
    """One library model: how to build it and its example inputs."""

    name: str
    library: str
    build: Callable[[], tuple[nn.Module, Any]]
    covers: tuple[str, ...] = field(default=())


def _ids(batch: int = 2, length: int = 8, vocab: int = 99) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(1))


def _mask() -> torch.Tensor:
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, 6:] = 0
    return mask


def _image(size: int = 32) -> torch.Tensor:
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))


def _hf(cls_name: str, config_name: str, inputs: Callable[[], dict[str, torch.Tensor]], **config: Any
        ) -> Callable[[], tuple[nn.Module, Any]]:
    def build() -> tuple[nn.Module, Any]:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import transformers

        torch.manual_seed(0)
        cfg = getattr(transformers, config_name)(**config)
        return getattr(transformers, cls_name)(cfg).eval(), inputs()
    return build


def _text() -> dict[str, torch.Tensor]:
    return {"input_ids": _ids(), "attention_mask": _mask()}


def _ids_only() -> dict[str, torch.Tensor]:
    return {"input_ids": _ids()}


_LM = {"vocab_size": 99, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
       "num_attention_heads": 4, "num_key_value_heads": 2, "use_cache": False}

HF_CASES: dict[str, ExternalCase] = {c.name: c for c in [
    ExternalCase("bert", "transformers", _hf(
        "BertForSequenceClassification", "BertConfig", _text, vocab_size=99, hidden_size=32,
        num_hidden_layers=2, num_attention_heads=4, intermediate_size=48, max_position_embeddings=16,
        num_labels=3),
        ("padding mask", "post-LN")),
    ExternalCase("distilbert", "transformers", _hf(
        "DistilBertForSequenceClassification", "DistilBertConfig", _text, vocab_size=99, dim=32, n_layers=2,
        n_heads=4, hidden_dim=48, max_position_embeddings=16, num_labels=3), ("config dim/hidden_dim",)),
    ExternalCase("albert", "transformers", _hf(
        "AlbertForSequenceClassification", "AlbertConfig", _text, vocab_size=99, embedding_size=24,
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
        max_position_embeddings=16, num_labels=3),
        ("one layer shared by all layers", "embedding projection")),
    ExternalCase("gpt2", "transformers", _hf(
        "GPT2LMHeadModel", "GPT2Config", _ids_only, vocab_size=99, n_embd=32, n_layer=2, n_head=4,
        n_positions=16, use_cache=False), ("Conv1D", "tied LM head")),
    ExternalCase("llama", "transformers", _hf("LlamaForCausalLM", "LlamaConfig", _ids_only, **_LM),
                 ("GQA 4/2", "RoPE", "SwiGLU")),
    ExternalCase("mistral", "transformers", _hf("MistralForCausalLM", "MistralConfig", _ids_only, **_LM),
                 ("GQA 4/2", "sliding window")),
    ExternalCase("qwen2", "transformers", _hf("Qwen2ForCausalLM", "Qwen2Config", _ids_only, **_LM),
                 ("GQA 4/2", "qkv bias")),
    ExternalCase("t5-encoder", "transformers", _hf(
        "T5ForTokenClassification", "T5Config", _text, vocab_size=99, d_model=32, d_kv=8, d_ff=48,
        num_layers=2, num_heads=4, num_labels=3), ("relative position bias", "RMS-style norm")),
    ExternalCase("vit", "transformers", _hf(
        "ViTForImageClassification", "ViTConfig", lambda: {"pixel_values": _image(16)}, image_size=16,
        patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
        num_labels=3), ("class token", "learned positions")),
    ExternalCase("whisper-encoder", "transformers", _hf(
        "WhisperForAudioClassification", "WhisperConfig",
        lambda: {"input_features": torch.randn(2, 8, 16, generator=torch.Generator().manual_seed(1))},
        num_mel_bins=8, d_model=32, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=48,
        max_source_positions=8, num_labels=3, classifier_proj_size=16), ("conv front end", "position table")),
]}
"""HuggingFace models (task heads, so that the hidden size is not a model output)."""


def _timm(build: Callable[[Any], nn.Module], size: int = 32) -> Callable[[], tuple[nn.Module, Any]]:
    def make() -> tuple[nn.Module, Any]:
        import timm

        torch.manual_seed(0)
        return build(timm).eval(), _image(size)
    return make


TIMM_CASES: dict[str, ExternalCase] = {c.name: c for c in [
    ExternalCase("vit", "timm", _timm(lambda t: t.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, embed_dim=32, depth=2,
        num_heads=4, num_classes=10)), ("fused qkv",)),
    ExternalCase("deit", "timm", _timm(lambda t: t.create_model(
        "deit_tiny_distilled_patch16_224", pretrained=False, img_size=32, patch_size=8, embed_dim=32, depth=2,
        num_heads=4, num_classes=10)), ("distillation token", "two heads")),
    ExternalCase("swin", "timm", _timm(lambda t: t.create_model(
        "swin_tiny_patch4_window7_224", pretrained=False, img_size=32, window_size=4, embed_dim=16,
        depths=(2, 2), num_heads=(2, 4), num_classes=10)), ("window attention", "patch merging")),
    ExternalCase("mixer", "timm", _timm(lambda t: t.models.mlp_mixer.MlpMixer(
        num_classes=10, img_size=32, patch_size=8, num_blocks=2, embed_dim=32)), ("token mixing",)),
    ExternalCase("convnext", "timm", _timm(lambda t: t.create_model(
        "convnext_atto", pretrained=False, dims=(16, 32, 48, 64), depths=(1, 1, 1, 1), num_classes=10)),
        ("conv token mixer", "LayerNorm2d")),
    ExternalCase("poolformer", "timm", _timm(lambda t: t.models.metaformer.MetaFormer(
        depths=(1, 1, 1, 1), dims=(16, 32, 48, 64), downsample_norm=None, mlp_act=nn.GELU, mlp_bias=True,
        norm_layers=t.models.metaformer.GroupNorm1, layer_scale_init_values=1e-5, res_scale_init_values=None,
        use_mlp_head=False, num_classes=10)), ("pooling token mixer", "GroupNorm(1)")),
    ExternalCase("levit", "timm", _timm(lambda t: t.create_model(
        "levit_128s", pretrained=False, img_size=64, embed_dim=(32, 48, 64), key_dim=8, num_heads=(2, 3, 4),
        depth=(1, 1, 1), num_classes=10), size=64), ("attention bias table", "BN-linear")),
    ExternalCase("edgenext", "timm", _timm(lambda t: t.create_model(
        "edgenext_xx_small", pretrained=False, dims=(16, 32, 48, 64), depths=(1, 1, 1, 1), heads=(2, 2, 2, 2),
        num_classes=10)), ("channel (XCA) attention",)),
    ExternalCase("coat", "timm", _timm(lambda t: t.create_model(
        "coat_lite_tiny", pretrained=False, img_size=32, embed_dims=(16, 32, 48, 64),
        serial_depths=(1, 1, 1, 1), num_heads=8, mlp_ratios=(2, 2, 2, 2), num_classes=10)),
        ("conv position encoding", "factor attention")),
    ExternalCase("mobilevit", "timm", _timm(lambda t: t.create_model(
        "mobilevit_xxs", pretrained=False, num_classes=10), size=64), ("conv + transformer blocks",)),
]}
"""timm models (small widths and depths)."""
