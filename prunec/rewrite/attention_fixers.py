"""Update attention and size attributes after pruning, so transformers run as their own classes.

Attention code keeps sizes in attributes (`num_heads`, `head_dim`, `all_head_size`, `embed_dim`,
`intermediate_size`, ...) and reshapes with them. After pruning, each such attribute gets its new
value *measured in the pruned graph*, never computed from names alone:

- the attribute's name gives its role (heads, KV heads, head dim, inner width, hidden size, MLP width);
- the role's axes in the module's ops give (old size, new size) pairs: attention head axes for heads,
  attention head-dim axes for head dims, residual/norm axes and the module's inputs for the hidden
  size, op outputs for MLP widths;
- only pairs whose old size equals the attribute's current value count, and they must agree on one new
  value. Otherwise the attribute is left alone and the report says so; verification then catches a
  module that no longer runs, and the GraphModule is returned instead.

`nn.MultiheadAttention` cannot hold an inner width different from its embedding width, so a pruned
one becomes a `PrunedMultiheadAttention` (a subclass computing the same function with any widths).
The SDPA resizer keeps the original softmax scale when the head dim shrinks.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from prunec.ir.graph import Graph, ValueKind
from prunec.rewrite.module_fixers import Fixer, ModuleContext, register_fixer
from prunec.rewrite.resize import Args, ResizeContext, register_resizer
from prunec.rules.torch_attention import HEAD_DIM, HEADS, HIDDEN, MLP

KV_HEADS, INNER, V_HEAD_DIM = "kv_heads", "inner", "v_head_dim"

SIZE_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    # attention heads
    "num_heads": (HEADS,), "num_attention_heads": (HEADS,), "n_heads": (HEADS,), "n_head": (HEADS,),
    "heads": (HEADS,), "nhead": (HEADS,), "num_attn_heads": (HEADS,), "num_q_heads": (HEADS,),
    # key/value heads (grouped-query attention)
    "num_key_value_heads": (KV_HEADS,), "num_kv_heads": (KV_HEADS,), "n_kv_heads": (KV_HEADS,),
    "n_kv_head": (KV_HEADS,),
    # head dims
    "head_dim": (HEAD_DIM,), "attention_head_size": (HEAD_DIM,), "head_size": (HEAD_DIM,),
    "d_head": (HEAD_DIM,), "dim_head": (HEAD_DIM,), "key_value_proj_dim": (HEAD_DIM,), "d_kv": (HEAD_DIM,),
    "key_dim": (HEAD_DIM,), "v_head_dim": (V_HEAD_DIM,), "val_dim": (V_HEAD_DIM,),
    # heads x head dim
    "all_head_size": (INNER,), "inner_dim": (INNER,), "split_size": (INNER,), "attn_dim": (INNER,),
    "key_attn_dim": (INNER,), "val_attn_dim": (INNER,),
    # the residual stream
    "hidden_size": (HIDDEN,), "embed_dim": (HIDDEN,), "d_model": (HIDDEN,), "n_embd": (HIDDEN,),
    "model_dim": (HIDDEN,), "hidden_dim": (HIDDEN, MLP),
    # MLP widths
    "intermediate_size": (MLP,), "ffn_dim": (MLP,), "d_ff": (MLP,), "mlp_dim": (MLP,), "n_inner": (MLP,),
    "hidden_features": (MLP,), "mlp_hidden_dim": (MLP,), "ffn_hidden_size": (MLP,),
}
"""Attribute name -> the roles whose measured size it holds (tried in order)."""
MEASURED = (HEADS, HEAD_DIM, V_HEAD_DIM, HIDDEN, MLP)
"""Roles measured directly on axes (the others are derived from these)."""


# -- roles of axes, per graph ------------------------------------------------------------------

_ROLE_CACHE: weakref.WeakKeyDictionary[Graph, dict[str, dict[str, list[tuple[str, int]]]]] = \
    weakref.WeakKeyDictionary()


def _roles_by_op(graph: Graph) -> dict[str, dict[str, list[tuple[str, int]]]]:
    """Op name -> role -> (value, axis) slots its role rule tags."""
    cached = _ROLE_CACHE.get(graph)
    if cached is not None:
        return cached
    from prunec.rules.registry import RULES
    from prunec.rules.torch_attention import axis_roles

    out: dict[str, dict[str, list[tuple[str, int]]]] = {}
    for name, tags in axis_roles(graph, RULES).items():
        for slot, role in tags:
            out.setdefault(name, {}).setdefault(role, []).append((slot.value, slot.axis))
    _ROLE_CACHE[graph] = out
    return out


def _pairs(ctx: ModuleContext, slots: Iterable[tuple[str, int]]) -> set[tuple[int, int]]:
    graph = ctx.graph
    return {(graph.value(v).shape[k], ctx.shape(v)[k]) for v, k in slots}


def role_sizes(ctx: ModuleContext, role: str) -> set[tuple[int, int]]:
    """(old size, new size) of every axis with this role in the module's ops (and its inputs)."""
    ops = ctx.subtree_ops()
    roles = _roles_by_op(ctx.graph)
    sdpa = [dict(ctx.graph.inputs(op)) for op in ops if op.op == "aten::scaled_dot_product_attention"]
    if role == HEAD_DIM and sdpa:  # q/k head dim (v's may differ: see V_HEAD_DIM)
        return _pairs(ctx, [(t.name, t.rank - 1) for ins in sdpa for t in (ins["query"], ins["key"])])
    if role == V_HEAD_DIM:
        return _pairs(ctx, [(ins["value"].name, ins["value"].rank - 1) for ins in sdpa])
    if role in (HEADS, HEAD_DIM, HIDDEN):
        slots = [s for op in ops for s in roles.get(op.name, {}).get(role, [])]
        pairs = _pairs(ctx, slots)
        if role == HIDDEN:
            pairs |= _pairs(ctx, _external_inputs(ctx, ops))
        return pairs
    if role == MLP:
        outs = [(v.name, v.rank - 1) for op in ops for v in ctx.graph.outputs(op) if v.rank >= 2]
        outs += [(v.name, 1) for op in ops for v in ctx.graph.outputs(op) if v.rank == 4]
        return _pairs(ctx, outs)
    return set()


def _external_inputs(ctx: ModuleContext, ops: list[Any]) -> list[tuple[str, int]]:
    inside = {op.name for op in ops}
    out = []
    for op in ops:
        for _, v in ctx.graph.inputs(op):
            prod = ctx.graph.producer(v)
            external = (prod is None and v.kind == ValueKind.INPUT) or (
                prod is not None and prod.name not in inside)
            if external and v.rank >= 2:
                out.append((v.name, v.rank - 1))
    return out


def pick(pairs: set[tuple[int, int]], old: int) -> int | None:
    """The new size of the axes whose old size is `old`: None when there are none or they disagree
    (where only some of them changed, the changed ones decide: a token axis never shrinks).
    """
    news = {n for o, n in pairs if o == old}
    if len(news) == 1:
        return news.pop()
    changed = news - {old}
    return changed.pop() if len(changed) == 1 else None


def disagree(pairs: set[tuple[int, int]], old: int) -> bool:
    """Whether axes of old size `old` shrank to different sizes (the value cannot be measured)."""
    return len({n for o, n in pairs if o == old} - {old}) > 1


# -- the generic size-attribute fixer ---------------------------------------------------------

def _int_attr(module: nn.Module, name: str) -> int | None:
    value = module.__dict__.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def new_size(module: nn.Module, ctx: ModuleContext, name: str, old: int) -> int | None:
    """The measured new value of size attribute `name` (None: not measurable here)."""
    for role in SIZE_ATTRIBUTES[name]:
        if role == KV_HEADS:
            value = _kv_heads(module, ctx, old)
        elif role == INNER:
            value = _inner(module, ctx, old)
        else:
            value = pick(role_sizes(ctx, role), old)
        if value is not None:
            return value
    return None


def _heads_pair(module: nn.Module, ctx: ModuleContext) -> tuple[int, int] | None:
    heads = role_sizes(ctx, HEADS)
    for name, roles in SIZE_ATTRIBUTES.items():
        if HEADS in roles and (old := _int_attr(module, name)) is not None:
            new = pick(heads, old)
            return (old, new) if new is not None else None
    changed = {(o, n) for o, n in heads if o != n}
    return changed.pop() if len(changed) == 1 else None


def key_head_axes(ctx: ModuleContext) -> set[tuple[int, int]]:
    """(old, new) sizes of axes 1 and 2 of the 4-D tensors the attention key is computed from
    ((B, KV, T, D) or (B, T, KV, D) before any repeat), within this module."""
    inside = {op.name for op in ctx.subtree_ops()}
    start = [dict(ctx.graph.inputs(op))["key"].name for op in ctx.subtree_ops()
             if op.op == "aten::scaled_dot_product_attention"]
    seen: set[str] = set()
    slots: list[tuple[str, int]] = []
    while start:
        name = start.pop()
        if name in seen:
            continue
        seen.add(name)
        value = ctx.graph.value(name)
        if value.rank == 4:
            slots += [(name, 1), (name, 2)]
        prod = ctx.graph.producer(value)
        if prod is not None and prod.name in inside and len(seen) < 64:
            start += [v.name for _, v in ctx.graph.inputs(prod) if not v.is_state]
    return _pairs(ctx, slots)


def _kv_heads(module: nn.Module, ctx: ModuleContext, old: int) -> int | None:
    """Measured on the key before it is repeated; else derived: a KV head goes only with all its
    query heads, so the query heads per KV head stay fixed."""
    measured = pick(key_head_axes(ctx), old)
    if measured is not None:
        return measured
    pair = _heads_pair(module, ctx)
    if pair is None or pair[0] % old:
        return None
    per_kv = pair[0] // old
    return pair[1] // per_kv if pair[1] % per_kv == 0 else None


def _inner(module: nn.Module, ctx: ModuleContext, old: int) -> int | None:
    """Heads x head dim (q/k or v: whichever product had the old value)."""
    heads = role_sizes(ctx, HEADS)
    dims = role_sizes(ctx, HEAD_DIM) | role_sizes(ctx, V_HEAD_DIM)
    if not any(t.op == "aten::scaled_dot_product_attention" for t in ctx.subtree_ops()):
        dims |= _pairs(ctx, [s for op in ctx.subtree_ops()
                             for s in _roles_by_op(ctx.graph).get(op.name, {}).get(HEAD_DIM, [])])
    return pick({(oh * od, nh * nd) for oh, nh in heads for od, nd in dims}, old)


NAMED_FIXERS: dict[str, Fixer] = {}
"""Qualified class name -> fixer, for library classes prunec does not import (transformers, timm)."""


def register_named_fixer(*qualified_names: str) -> Callable[[Fixer], Fixer]:
    """Decorator: a fixer for classes given by qualified name ('timm.models.metaformer.Scale')."""
    def wrap(fn: Fixer) -> Fixer:
        for name in qualified_names:
            NAMED_FIXERS[name] = fn
        return fn
    return wrap


def named_fixer(module: nn.Module) -> Fixer | None:
    """The named fixer of the nearest class in the module's MRO, if any."""
    for cls in type(module).__mro__:
        fn = NAMED_FIXERS.get(f"{cls.__module__}.{cls.__qualname__}")
        if fn is not None:
            return fn
    return None


@register_named_fixer("timm.models.metaformer.Scale")
def _timm_scale(m: nn.Module, ctx: ModuleContext) -> None:
    """Timm's MetaFormer Scale: x * scale.view(shape), shape (dim, 1, 1) or (dim,)."""
    shape = tuple(m.shape)  # type: ignore[arg-type]
    m.shape = (int(m.scale.shape[0]), *shape[1:])  # type: ignore[union-attr]


@register_fixer(nn.Module)
def size_attributes(module: nn.Module, ctx: ModuleContext) -> None:
    """Fallback fixer for any class without its own: update the size attributes it holds (and run the
    fixer of a library class known by name, such as transformers' Conv1D).
    """
    if (named := named_fixer(module)) is not None:
        named(module, ctx)
    updates: dict[str, int] = {}
    for name in SIZE_ATTRIBUTES:  # measure every attribute first: each reads the others' old values
        old = _int_attr(module, name)
        if old is None:
            continue
        new = new_size(module, ctx, name, old)
        if new is None:
            if any(disagree(role_sizes(ctx, r), old) for r in SIZE_ATTRIBUTES[name] if r in MEASURED):
                ctx.note(f"'{ctx.path or type(module).__name__}.{name}' = {old}: axes of that size shrank "
                         "to different sizes, so its new value is ambiguous; left as is")
        elif new != old:
            updates[name] = new
    for name, new in updates.items():
        setattr(module, name, new)


# -- nn.MultiheadAttention ----------------------------------------------------------------------

class PrunedMultiheadAttention(nn.MultiheadAttention):
    """nn.MultiheadAttention whose inner widths (heads x q/k dim, heads x v dim) may differ from its
    embedding width, as pruning leaves it. Same call signature and results as the original.
    """

    qk_head_dim: int
    v_head_dim: int
    scaling: float

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,  # type: ignore[override]
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = True,
                attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        tq, b, _ = query.shape
        ts = key.shape[0]
        h, dq, dv = self.num_heads, self.qk_head_dim, self.v_head_dim
        wq, wk, wv = self._projections()
        bq, bk, bv = self._biases(h * dq, h * dv)
        q = F.linear(query, wq, bq).view(tq, b, h, dq).permute(1, 2, 0, 3)
        k = F.linear(key, wk, bk).view(ts, b, h, dq).permute(1, 2, 0, 3)
        v = F.linear(value, wv, bv).view(ts, b, h, dv).permute(1, 2, 0, 3)
        mask = _merged_mask(attn_mask, key_padding_mask, b, h, tq, ts, q.dtype, is_causal)
        p = self.dropout if self.training else 0.0
        if need_weights:
            scores = q @ k.transpose(-2, -1) * self.scaling
            if mask is not None:
                scores = scores + mask
            weights = F.dropout(scores.softmax(-1), p)
            out = weights @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, scale=self.scaling)
            weights = None
        out = self.out_proj(out.permute(2, 0, 1, 3).reshape(tq, b, h * dv))
        if self.batch_first:
            out = out.transpose(0, 1)
        if weights is not None and average_attn_weights:
            weights = weights.mean(dim=1)
        return out, weights

    def _projections(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h, dq = self.num_heads, self.qk_head_dim
        if self.in_proj_weight is not None:
            w = self.in_proj_weight
            return w[: h * dq], w[h * dq: 2 * h * dq], w[2 * h * dq:]
        return self.q_proj_weight, self.k_proj_weight, self.v_proj_weight  # type: ignore[return-value]

    def _biases(self, qk: int, v: int) -> tuple[torch.Tensor | None, ...]:
        if self.in_proj_bias is None:
            return None, None, None
        bias = self.in_proj_bias
        return bias[:qk], bias[qk: 2 * qk], bias[2 * qk: 2 * qk + v]


def _merged_mask(attn_mask: torch.Tensor | None, key_padding_mask: torch.Tensor | None, b: int, h: int,
                 tq: int, ts: int, dtype: torch.dtype, is_causal: bool) -> torch.Tensor | None:
    """One additive float mask (B, H, Tq, Ts) from nn.MultiheadAttention's mask arguments."""
    def additive(m: torch.Tensor) -> torch.Tensor:
        if m.dtype == torch.bool:
            return torch.zeros(m.shape, dtype=dtype, device=m.device).masked_fill(m, float("-inf"))
        return m.to(dtype)
    mask = None
    if attn_mask is None and is_causal:
        attn_mask = torch.ones(tq, ts, dtype=torch.bool).triu(1)
    if attn_mask is not None:
        mask = additive(attn_mask)
        mask = mask.view(b, h, tq, ts) if mask.dim() == 3 else mask.view(1, 1, tq, ts)
    if key_padding_mask is not None:
        pad = additive(key_padding_mask).view(b, 1, 1, ts)
        mask = pad if mask is None else mask + pad
    return mask


@register_fixer(nn.MultiheadAttention)
def multihead_attention(m: nn.MultiheadAttention, ctx: ModuleContext) -> None:
    """New widths from the sliced weights and the measured heads; a PrunedMultiheadAttention when the
    inner widths no longer equal the embedding width.
    """
    if m.bias_k is not None or m.add_zero_attn:
        ctx.note(f"'{ctx.path}': nn.MultiheadAttention with add_bias_kv/add_zero_attn is not rewritten")
        return
    old_dim = m.head_dim
    qk_dim = pick(role_sizes(ctx, HEAD_DIM), old_dim)
    v_dim = pick(role_sizes(ctx, V_HEAD_DIM), old_dim) or qk_dim
    rows = int(m.in_proj_weight.shape[0] if m.in_proj_weight is not None else m.q_proj_weight.shape[0] * 3)
    heads = pick(role_sizes(ctx, HEADS), m.num_heads)
    if heads is None and qk_dim is not None and v_dim is not None and rows % (2 * qk_dim + v_dim) == 0:
        heads = rows // (2 * qk_dim + v_dim)  # heads folded into the batch axis (the need_weights path)
    if heads is None or qk_dim is None or v_dim is None or heads * (2 * qk_dim + v_dim) != rows:
        ctx.note(f"'{ctx.path}': could not measure the pruned heads and head dims of this "
                 "nn.MultiheadAttention; left as is")
        return
    embed = int(m.out_proj.weight.shape[0])
    m.out_proj.in_features, m.out_proj.out_features = int(m.out_proj.weight.shape[1]), embed
    if m.in_proj_weight is not None:
        kdim = vdim = int(m.in_proj_weight.shape[1])
    else:
        kdim, vdim = int(m.k_proj_weight.shape[1]), int(m.v_proj_weight.shape[1])
    representable = heads * qk_dim == heads * v_dim == embed == kdim == vdim
    if isinstance(m, PrunedMultiheadAttention) or not representable:
        m.__class__ = PrunedMultiheadAttention
        m.scaling = getattr(m, "scaling", old_dim ** -0.5)
        m.qk_head_dim, m.v_head_dim = qk_dim, v_dim
    m.embed_dim, m.kdim, m.vdim, m.num_heads, m.head_dim = embed, kdim, vdim, heads, qk_dim


# -- the SDPA resizer -----------------------------------------------------------------------

@register_resizer("aten::scaled_dot_product_attention")
def _sdpa_scale(a: Args, ctx: ResizeContext) -> None:
    """Keep the original softmax scale 1/sqrt(d) when the q/k head dim shrinks."""
    old, new = ctx.old_in_shape("query")[-1], ctx.in_shape("query")[-1]
    if a.get("scale") is None and old != new:
        a.set("scale", old ** -0.5)


from prunec import hf as _hf  # noqa: E402,F401  (registers the HuggingFace config update)
