"""One-line helpers that register whole op families (JAX's `defbroadcasting` in spirit).

Each helper states the family's channel math once; torch_ops.py and onnx_ops.py list the members.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from prunec.ir.slots import ArrayMap, Digit, Offset, Slot
from prunec.rules.api import (
    Declined,
    Fact,
    OpView,
    RuleResult,
    TensorView,
    alternatives,
    couple,
    decline,
    free,
    reduces,
)
from prunec.rules.registry import RULES, RuleRegistry


def _reg(registry: RuleRegistry | None) -> RuleRegistry:
    return registry if registry is not None else RULES


def same_shape_rule(node: OpView) -> RuleResult:
    """out[..c..] = f(in[..c..]): every axis of input 0 flows straight to every output."""
    x = node.input(0)
    facts: list[Fact] = []
    for y in node.outputs:
        if y.shape != x.shape:
            return decline(f"output shape {y.shape} differs from input shape {x.shape}")
        facts += [couple(x.axis(k), y.axis(k)) for k in range(x.rank)]
    for other in node.inputs[1:]:
        facts += broadcast_facts(other, node.output(0))
    return facts


def elementwise(*ops: str, registry: RuleRegistry | None = None) -> None:
    """Register unary elementwise ops: out[c] = f(in[c]) on every axis."""
    _reg(registry).register(ops, same_shape_rule, source=_caller())


def singular_rule(node: OpView) -> RuleResult:
    """out[c] = f(in[c]) where f(0) is not finite: channels flow as for `same_shape_rule`, and every
    axis of input 0 is marked as one where zeroing differs from removing."""
    facts = same_shape_rule(node)
    if isinstance(facts, Declined):
        return facts
    x = node.input(0)
    return [*facts, *(reduces(x.axis(k), f"'{node.op}' is not finite at zero: a zeroed channel differs "
                                          "from a removed one") for k in range(x.rank))]


singular_rule.positionwise = True  # type: ignore[attr-defined]  # out[i] depends on in[i] only


def singular_at_zero(*ops: str, registry: RuleRegistry | None = None) -> None:
    """Register unary elementwise ops that are infinite at 0 (log, reciprocal, rsqrt, ...)."""
    _reg(registry).register(ops, singular_rule, source=_caller())


def concat_facts(parts: Sequence[TensorView], whole: TensorView, dim: int) -> list[Fact]:
    """The parts laid end to end along `dim` make `whole` (concatenation, or a split read the other
    way): part j's channel c is channel offset_j + c of `whole`; the other axes pass. Parts of another
    rank (legacy empty tensors in cat) are left out."""
    facts: list[Fact] = []
    start = 0
    for t in parts:
        if t.rank != whole.rank:
            continue
        facts += [couple(t.axis(k), whole.axis(k)) for k in range(whole.rank) if k != dim]
        facts.append(couple(t.axis(dim), whole.axis(dim), Offset(start)))
        start += t.size(dim)
    return facts


def broadcast_facts(t: TensorView, y: TensorView) -> list[Fact]:
    """Couple `t`'s axes to `y`'s under numpy broadcasting; size-1 axes of `t` are left out."""
    facts: list[Fact] = []
    shift = y.rank - t.rank
    if shift < 0:
        return facts
    for k in range(t.rank):
        if t.size(k) == y.size(k + shift):
            facts.append(couple(t.axis(k), y.axis(k + shift)))
    return facts


def broadcasting_rule(node: OpView) -> RuleResult:
    """out[c] = f(a[c], b[c], ...): aligned axes couple; broadcast (size-1) axes do not."""
    facts: list[Fact] = []
    for y in node.outputs:
        for t in node.inputs:
            facts += broadcast_facts(t, y)
    return facts


def broadcasting(*ops: str, registry: RuleRegistry | None = None) -> None:
    """Register n-ary broadcasting ops (add, mul, where, ...)."""
    _reg(registry).register(ops, broadcasting_rule, source=_caller())


def divisor_facts(node: OpView, port: str) -> list[Fact]:
    """The divisor's channel axes (those coupled to the output): zeroing one divides by zero."""
    d = node.input_or_none(port)
    if d is None:
        return []
    y = node.output(0)
    shift = y.rank - d.rank
    return [reduces(d.axis(k), f"'{node.op}' divides by this axis: a zeroed channel divides by zero")
            for k in range(d.rank) if shift >= 0 and d.size(k) == y.size(k + shift) and d.size(k) > 1]


def dividing(port: str, *ops: str, registry: RuleRegistry | None = None) -> None:
    """Register broadcasting ops that divide by (or take the log of) the input on `port`."""
    def rule(node: OpView) -> RuleResult:
        return [*broadcasting_rule(node), *divisor_facts(node, port)]
    rule.positionwise = True  # type: ignore[attr-defined]  # elementwise under broadcasting
    _reg(registry).register(ops, rule, source=_caller())


def leading_axes_rule(spatial: int) -> object:
    """Rule for ops that act on the last `spatial` axes (pooling, resize, reflection pad):
    channels and batch pass through; the spatial axes are not channels (pinned)."""
    def rule(node: OpView) -> RuleResult:
        x = node.input(0)
        lead = x.rank - spatial
        if lead < 0:
            return decline(f"expected at least {spatial} axes, got shape {x.shape}")
        return [couple(x.axis(k), y.axis(k)) for y in node.outputs for k in range(lead)
                if y.rank == x.rank]
    return rule


def spatial(spatial_axes: int, *ops: str, registry: RuleRegistry | None = None) -> None:
    """Register ops that act independently per channel on the last `spatial_axes` axes."""
    _reg(registry).register(ops, leading_axes_rule(spatial_axes), source=_caller())  # type: ignore[arg-type]


def reduce_rule(dims: Sequence[int] | None, keepdim: bool, node: OpView) -> RuleResult:
    """Reduction over `dims` of input 0: kept axes pass through; reduced axes are mixed."""
    x = node.input(0)
    red = sorted({d % x.rank for d in dims}) if dims else list(range(x.rank))
    facts: list[Fact] = [reduces(x.axis(d), f"'{node.op}' reduces over axis {d}") for d in red]
    for y in node.outputs:
        out_axis = 0
        for k in range(x.rank):
            if k in red:
                out_axis += 1 if keepdim else 0
                continue
            if out_axis < y.rank and y.size(out_axis) == x.size(k):
                facts.append(couple(x.axis(k), y.axis(out_axis)))
            out_axis += 1
    return facts


def metadata_only(*ops: str, registry: RuleRegistry | None = None) -> None:
    """Register ops that read only shapes/dtypes of their inputs (asserts, size queries)."""
    def rule(node: OpView) -> RuleResult:
        return [free(s) for t in node.inputs for s in t.slots()]
    _reg(registry).register(ops, rule, source=_caller())


def creation(*ops: str, registry: RuleRegistry | None = None) -> None:
    """Register ops that create tensors of a size fixed by constants (arange, zeros, full):
    their outputs are pinned, and tensor inputs (if any) are only read for metadata."""
    def rule(node: OpView) -> RuleResult:
        return [free(s) for t in node.inputs for s in t.slots()]
    _reg(registry).register(ops, rule, source=_caller())


# -- reshapes ---------------------------------------------------------------------------------

def reshape_chunks(src: Sequence[int], dst: Sequence[int]) -> list[tuple[list[int], list[int]]]:
    """Split a reshape into chunks of consecutive axes with equal products, ignoring size-1 axes.

    (2, 768) -> (2, 12, 64) gives [([0], [0]), ([1], [1, 2])].
    """
    si = [i for i, s in enumerate(src) if s != 1]
    di = [i for i, s in enumerate(dst) if s != 1]
    chunks: list[tuple[list[int], list[int]]] = []
    a = b = 0
    while a < len(si) and b < len(di):
        ca, cb = [si[a]], [di[b]]
        pa, pb = src[si[a]], dst[di[b]]
        a, b = a + 1, b + 1
        while pa != pb:
            if pa < pb and a < len(si):
                pa *= src[si[a]]
                ca.append(si[a])
                a += 1
            elif pb < pa and b < len(di):
                pb *= dst[di[b]]
                cb.append(di[b])
                b += 1
            else:
                return chunks
        chunks.append((ca, cb))
    return chunks


def factor_options(whole: Slot, parts: list[Slot], factors: tuple[int, ...],
                   whole_is_input: bool, what: str) -> list[list[Fact]]:
    """One option per factor axis: channels of `whole` follow that factor (outer first)."""
    options: list[list[Fact]] = []
    for pos, part in enumerate(parts):
        c = couple(whole, part, Digit(factors, pos))
        options.append([c])
    return options


def common_factors(src: Sequence[int], dst: Sequence[int]) -> list[int] | None:
    """The coarsest factors whose running products hit every axis boundary of `src` and `dst`
    (row-major, outermost first), or None when there are none: (2, 32) and (8, 8) give
    [2, 4, 8]; (6, 4) and (4, 6) give None (4 does not divide 6)."""
    bounds = sorted(set(np.cumprod(src).tolist()) | set(np.cumprod(dst).tolist()))
    factors, prev = [], 1
    for b in bounds:
        if b % prev:
            return None
        factors.append(b // prev)
        prev = b
    return factors


def _axis_factors(sizes: Sequence[int], factors: Sequence[int]) -> list[list[int]]:
    """For each axis of `sizes`, the indices of the common factors it is made of."""
    out: list[list[int]] = []
    k = 0
    for size in sizes:
        own, prod = [], 1
        while prod < size:
            prod *= factors[k]
            own.append(k)
            k += 1
        out.append(own)
    return out


def _digit_of(factors: Sequence[int], own: Sequence[int], k: int) -> np.ndarray:
    """Digit of common factor `k` for every index of an axis made of factors `own`."""
    sizes = [factors[j] for j in own]
    pos = list(own).index(k)
    return Digit(tuple(sizes), pos).pairs(0, 0)[1]


def _shared_digit_map(da: np.ndarray, db: np.ndarray) -> ArrayMap:
    """Pairs linking every index of `a` and every index of `b` that share a digit value."""
    rep_b = np.full(int(da.max(initial=0)) + 1, -1, dtype=np.int64)
    rep_b[db[::-1]] = np.arange(len(db) - 1, -1, -1)
    rep_a = np.full(int(db.max(initial=0)) + 1, -1, dtype=np.int64)
    rep_a[da[::-1]] = np.arange(len(da) - 1, -1, -1)
    ia = np.concatenate([np.arange(len(da)), rep_a[db]])
    ib = np.concatenate([rep_b[da], np.arange(len(db))])
    ok = (ia >= 0) & (ib >= 0)
    return ArrayMap(ia[ok], ib[ok], label="same digit")


def tangled_options(x: TensorView, y: TensorView, src: list[int], dst: list[int]
                    ) -> tuple[list[list[Fact]], list[str]]:
    """Options for a reshape chunk that splits and merges at once ((T, B, E) -> (T, B*H, D)): one per
    common factor, coupling the input axis and the output axis that both hold that factor."""
    ss, ds = [x.size(a) for a in src], [y.size(a) for a in dst]
    factors = common_factors(ss, ds)
    if factors is None:
        return [], []
    s_own, d_own = _axis_factors(ss, factors), _axis_factors(ds, factors)
    options: list[list[Fact]] = []
    labels: list[str] = []
    for k, f in enumerate(factors):
        if f == 1:
            continue
        si = next(i for i, own in enumerate(s_own) if k in own)
        di = next(i for i, own in enumerate(d_own) if k in own)
        da, db = _digit_of(factors, s_own[si], k), _digit_of(factors, d_own[di], k)
        options.append([couple(x.axis(src[si]), y.axis(dst[di]), _shared_digit_map(da, db))])
        labels.append(f"reshape {'x'.join(map(str, ss))} -> {'x'.join(map(str, ds))}: channels follow "
                      f"common factor {k} (size {f})")
    return options, labels


def reshape_facts(x: TensorView, y: TensorView) -> list[Fact]:
    """Channel flow of any reshape (view, flatten, unflatten, squeeze, unsqueeze).

    Equal axes pass straight through. A split (768 -> 12 x 64) or merge (C, H, W -> C*H*W) offers
    one alternative per factor: the channels of the whole follow that factor (e.g. heads, or the
    channel axis of a flatten); the other factors are pinned. A chunk that splits and merges at once
    ((B, E) -> (B*H, D), as nn.MultiheadAttention does) offers one alternative per common factor of
    both sides. Chunks without common factors are pinned.
    """
    facts: list[Fact] = []
    for src, dst in reshape_chunks(x.shape, y.shape):
        if len(src) == 1 and len(dst) == 1:
            facts.append(couple(x.axis(src[0]), y.axis(dst[0])))
        elif len(src) == 1:
            factors = tuple(y.size(d) for d in dst)
            opts = factor_options(x.axis(src[0]), [y.axis(d) for d in dst], factors, True, "split")
            facts.append(alternatives(opts, [f"split {x.size(src[0])} -> {'x'.join(map(str, factors))}:"
                                             f" channels follow factor {i}" for i in range(len(dst))]))
        elif len(dst) == 1:
            factors = tuple(x.size(s) for s in src)
            opts = factor_options(y.axis(dst[0]), [x.axis(s) for s in src], factors, False, "merge")
            facts.append(alternatives(opts, [f"merge {'x'.join(map(str, factors))} -> {y.size(dst[0])}:"
                                             f" channels follow factor {i}" for i in range(len(src))]))
        else:
            opts, labels = tangled_options(x, y, src, dst)
            if opts:
                facts.append(alternatives(opts, labels))
    return facts


def reshape_rule(node: OpView) -> RuleResult:
    """Rule for every reshape-like op (the target shape is read from the output)."""
    return reshape_facts(node.input(0), node.output(0))


def permute_facts(x: TensorView, y: TensorView, perm: Sequence[int]) -> list[Fact]:
    """y axis k is x axis perm[k]."""
    return [couple(x.axis(p), y.axis(k)) for k, p in enumerate(perm)]


def _caller() -> str:
    import inspect

    frame = inspect.stack()[2]
    return f"{frame.filename}:{frame.lineno}"


def offsets_of(sizes: Sequence[int]) -> np.ndarray:
    """Start offset of each part of a concatenation."""
    return np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
