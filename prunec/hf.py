"""HuggingFace transformers specifics: config fields and `Conv1D` follow the pruned sizes.

Nothing here imports `transformers`: classes are recognised by their qualified names and configs by
their fields, so prunec works without the library installed.

After a module rewrite, every `config` a model holds gets its size fields (`num_attention_heads`,
`num_key_value_heads`, `head_dim`, `hidden_size`, `intermediate_size`, and the per-family spellings:
`n_head`, `n_embd`, `n_inner`, `d_model`, `d_kv`, `d_ff`, `dim`, `hidden_dim`, `num_heads`,
`encoder_attention_heads`, `encoder_ffn_dim`, `embedding_size`, ...) measured in the pruned graph,
the same way module attributes are (see `prunec.rewrite.attention_fixers`). Then the model class is
built from the new config on the `meta` device and its parameter shapes are compared with the
pruned model's: if they differ (layers pruned to different sizes, or a config that derives a size
from others, as BERT's head size = hidden_size / num_attention_heads), the report says that
`save_pretrained`/`from_pretrained` will not reload the model and names the first mismatch.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from prunec.rewrite.attention_fixers import register_named_fixer
from prunec.rewrite.module_fixers import ModuleContext, register_model_fixer

CONFIG_FIELDS: dict[str, str] = {
    "num_attention_heads": "heads", "n_head": "heads", "n_heads": "heads", "num_heads": "heads",
    "encoder_attention_heads": "heads", "decoder_attention_heads": "heads",
    "num_key_value_heads": "kv_heads",
    "head_dim": "head_dim", "d_kv": "head_dim",
    "hidden_size": "hidden", "n_embd": "hidden", "d_model": "hidden", "dim": "hidden", "embed_dim": "hidden",
    "embedding_size": "hidden",
    "intermediate_size": "mlp", "n_inner": "mlp", "d_ff": "mlp", "hidden_dim": "mlp",
    "encoder_ffn_dim": "mlp", "decoder_ffn_dim": "mlp", "mlp_dim": "mlp", "classifier_proj_size": "mlp",
}
"""Config field -> role of the size it holds (config spellings differ from module attributes:
DistilBERT's `dim` is the hidden size and its `hidden_dim` the FFN width)."""

IMPLIED: dict[str, Callable[[Any], int | None]] = {
    "n_inner": lambda cfg: 4 * cfg.n_embd if isinstance(getattr(cfg, "n_embd", None), int) else None,
    "head_dim": lambda cfg: (cfg.hidden_size // cfg.num_attention_heads
                             if isinstance(getattr(cfg, "hidden_size", None), int)
                             and isinstance(getattr(cfg, "num_attention_heads", None), int) else None),
}
"""Fields a config may leave as None, and the value the model then derives (set explicitly after
pruning, or the derived value would follow the new hidden size)."""


def is_hf_config(obj: object) -> bool:
    """Whether `obj` looks like a transformers PretrainedConfig."""
    return any(c.__name__ in ("PretrainedConfig", "PreTrainedConfig")
               and c.__module__.startswith("transformers") for c in type(obj).__mro__)


def _conv1d(m: nn.Module, ctx: ModuleContext) -> None:
    """Transformers' Conv1D: weight (nx, nf), y = x @ W + b."""
    m.nx, m.nf = (int(s) for s in m.weight.shape)  # type: ignore[union-attr]


def _old_value(cfg: Any, name: str) -> int | None:
    value = getattr(cfg, name, None)
    if value is None and name in IMPLIED:
        value = IMPLIED[name](cfg)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def update_config(cfg: Any, ctx: ModuleContext) -> list[str]:
    """Set the config's size fields to their measured new values; return what could not be measured."""
    from prunec.rewrite.attention_fixers import disagree, key_head_axes, pick, role_sizes

    olds = {name: v for name in CONFIG_FIELDS if (v := _old_value(cfg, name)) is not None}
    heads = role_sizes(ctx, "heads")
    updates: dict[str, int] = {}
    missing: list[str] = []
    for name, old in olds.items():
        role = CONFIG_FIELDS[name]
        if role == "kv_heads":
            new = pick(key_head_axes(ctx), old) or _kv_heads(olds, heads, old)
        else:
            new = pick(role_sizes(ctx, role), old)
        if new is None:
            if role != "kv_heads" and disagree(role_sizes(ctx, role), old):
                missing.append(f"{name}={old}")
        elif new != old or getattr(cfg, name, None) is None:
            updates[name] = new
    for name, new in updates.items():
        setattr(cfg, name, new)
    return missing


def _kv_heads(olds: dict[str, int], heads: set[tuple[int, int]], old_kv: int) -> int | None:
    from prunec.rewrite.attention_fixers import pick

    q = next((olds[n] for n in ("num_attention_heads", "n_head", "num_heads") if n in olds), None)
    new_q = pick(heads, q) if q is not None else None
    if q is None or new_q is None or q % old_kv or new_q % (q // old_kv):
        return None
    return new_q // (q // old_kv)


def roundtrip_mismatch(model: nn.Module) -> str | None:
    """Build `type(model)(model.config)` on the meta device and compare parameter shapes: the first
    difference as text, or None when `from_pretrained` would rebuild every shape.
    """
    try:
        with torch.device("meta"):
            fresh = type(model)(copy.deepcopy(model.config))  # type: ignore[call-arg]
    except Exception as exc:
        return f"{type(model).__name__}(config) fails: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for k, v in fresh.state_dict().items():
        if k in want and tuple(v.shape) != want[k]:
            return f"the config builds '{k}' as {tuple(v.shape)}, the pruned model has {want[k]}"
    return None


register_named_fixer("transformers.pytorch_utils.Conv1D")(_conv1d)


@register_model_fixer
def update_configs(model: nn.Module, ctx: ModuleContext) -> None:
    """Update every HuggingFace config the model holds, then check that it rebuilds the model."""
    configs = {id(c): c for m in model.modules() if is_hf_config(c := getattr(m, "config", None))}
    if not configs:
        return
    for cfg in configs.values():
        missing = update_config(cfg, ctx)
        if missing:
            ctx.note(f"{type(cfg).__name__}: the layers measured for {', '.join(missing)} were pruned to "
                     "different sizes, which one config field cannot hold (left as is)")
    if is_hf_config(getattr(model, "config", None)):
        problem = roundtrip_mismatch(model)
        if problem is not None:
            ctx.note(f"save_pretrained/from_pretrained will not reload this pruned "
                     f"{type(model).__name__}: {problem}. Save it with torch.save, or prune so that the "
                     "config can describe it (same sizes in every layer; for configs that derive the head "
                     "size from hidden_size / num_attention_heads, prune hidden size and heads together)")
