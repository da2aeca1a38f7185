"""Built-in channel rules for the ONNX operator set ('onnx::Conv', 'onnx::Gemm', ...).

Written with prunec.rules' public API only, like the ATen table: two tables over one API. The ONNX
frontend names tensor ports by the operator schema ('X', 'W', 'B' for Conv; variadic ports as
'inputs.0', 'inputs.1') and gives rules every input folded at load time (shape tensors, Slice
bounds, Split sizes, reduction axes) as an attribute of the same name, next to the node's own
attributes and its domain's `opset`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from prunec.ir.slots import ArrayMap, Block, Offset, Strided, Tile
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
    pin,
    reduces,
)
from prunec.rules.families import (
    broadcast_facts,
    concat_facts,
    broadcasting,
    broadcasting_rule,
    creation,
    elementwise,
    metadata_only,
    permute_facts,
    reduce_rule,
    reshape_rule,
    same_shape_rule,
)
from prunec.rules.registry import RULES, op_rule

# -- families ---------------------------------------------------------------------------------

# out[c] = f(in[c]); extra scalar inputs (Clip bounds, Dropout ratio) have no axes
elementwise(
    "onnx::Relu", "onnx::Sigmoid", "onnx::Tanh", "onnx::LeakyRelu", "onnx::Elu", "onnx::Selu", "onnx::Celu",
    "onnx::HardSigmoid", "onnx::HardSwish", "onnx::Softplus", "onnx::Softsign", "onnx::Gelu", "onnx::Mish",
    "onnx::ThresholdedRelu", "onnx::Shrink", "onnx::Exp", "onnx::Sqrt", "onnx::Abs", "onnx::Neg",
    "onnx::Floor", "onnx::Ceil", "onnx::Round", "onnx::Erf", "onnx::Sin", "onnx::Cos",
    "onnx::Tan", "onnx::Asin", "onnx::Acos", "onnx::Atan", "onnx::Sinh", "onnx::Cosh", "onnx::Asinh",
    "onnx::Acosh", "onnx::Atanh", "onnx::Sign", "onnx::Not", "onnx::IsNaN", "onnx::IsInf", "onnx::BitwiseNot",
    "onnx::Clip",
    # copies and casts keep every element where it was; Dropout is the identity at inference
    "onnx::Identity", "onnx::Cast", "onnx::Dropout",
)

# out[c] = f(a[c], b[c], ...) with numpy broadcasting; size-1 axes are not coupled
broadcasting(
    "onnx::Add", "onnx::Sub", "onnx::Mul", "onnx::Max", "onnx::Min", "onnx::Sum",
    "onnx::Mean", "onnx::Where", "onnx::Equal", "onnx::Less", "onnx::LessOrEqual", "onnx::Greater",
    "onnx::GreaterOrEqual", "onnx::And", "onnx::Or", "onnx::Xor", "onnx::BitwiseAnd",
    "onnx::BitwiseOr", "onnx::BitwiseXor", "onnx::BitShift", "onnx::PRelu",
)



# ops that are not finite at 0 (log(0), 1/0, 0/0, 0**-1): a zeroed channel poisons its consumers
# (0 * inf = NaN), so zeroing is not removal there; the removal reference evaluates them on the
# kept channels only
def _aligned_axes(t: TensorView, y: TensorView) -> list[int]:
    shift = y.rank - t.rank
    return [k for k in range(t.rank) if k + shift >= 0 and t.size(k) == y.size(k + shift)]


@op_rule("onnx::Log", "onnx::Reciprocal")
def undefined_at_zero(node: OpView) -> RuleResult:
    """out[c] = f(in[c]) with f(0) not finite: coupled like any elementwise op, not zero-invariant."""
    facts = same_shape_rule(node)
    if isinstance(facts, Declined):
        return facts
    x = node.input(0)
    return [*facts, *(reduces(x.axis(k), f"'{node.op}' is not finite at 0") for k in range(x.rank))]


@op_rule("onnx::Div", "onnx::Mod")
def divide(node: OpView) -> RuleResult:
    """out[c] = a[c] / b[c] with broadcasting; a zeroed divisor channel gives 0/0 = NaN."""
    facts = list(broadcasting_rule(node))
    if node.has_input(1):
        b = node.input(1)
        facts += [reduces(b.axis(k), f"'{node.op}' divides by these channels (0/0 when zeroed)")
                  for k in _aligned_axes(b, node.output(0))]
    return facts


@op_rule("onnx::Pow")
def power(node: OpView) -> RuleResult:
    """out[c] = x[c] ** y: zero-invariant only for a constant exponent > 0 (0 ** y is 1 or inf else)."""
    facts = list(broadcasting_rule(node))
    exponent = node.attr("Y")
    positive = not node.has_input("Y") and exponent is not None and bool(np.all(np.asarray(exponent) > 0))
    if not positive:
        x = node.input(0)
        facts += [reduces(x.axis(k), f"'{node.op}' with exponent {exponent!r} is not zero at 0")
                  for k in _aligned_axes(x, node.output(0))]
    return facts


# tensors whose size comes from constants: outputs pinned, inputs read for metadata only
creation("onnx::ConstantOfShape", "onnx::Range", "onnx::EyeLike", "onnx::RandomNormalLike",
         "onnx::RandomUniformLike", "onnx::RandomNormal", "onnx::RandomUniform")
metadata_only("onnx::Shape", "onnx::Size")

# pure re-arrangements: a view of a parameter still holds that parameter's zeros
RULES.mark_view_like("onnx::Identity", "onnx::Cast", "onnx::CastLike", "onnx::Transpose", "onnx::Reshape",
                     "onnx::Flatten", "onnx::Squeeze", "onnx::Unsqueeze", "onnx::Expand", "onnx::Tile")

# any reshape: equal axes pass; splits/merges offer each factor as the channel carrier
RULES.register(("onnx::Reshape", "onnx::Flatten", "onnx::Squeeze", "onnx::Unsqueeze"), reshape_rule)


@op_rule("onnx::CastLike")
def cast_like(node: OpView) -> RuleResult:
    """out[c] = cast(in[c]); the second input only gives the element type."""
    x, y = node.input(0), node.output(0)
    return [couple(x.axis(k), y.axis(k)) for k in range(x.rank)] + [free(s) for s in node.input(1).slots()]


# -- convolution, linear, matmul --------------------------------------------------------------

def _grouped(x: TensorView, y: TensorView, w: TensorView, groups: int, transposed: bool) -> list[Fact]:
    """Grouped conv: prune the same positions in every group, or whole groups."""
    c_in, c_out = x.size(1), y.size(1)
    in_pg, out_pg = c_in // groups, c_out // groups
    gi = np.repeat(np.arange(groups), in_pg * out_pg)
    ii = np.tile(np.repeat(np.arange(in_pg), out_pg), groups)
    oo = np.tile(np.arange(out_pg), groups * in_pg)
    whole: list[Fact] = [couple(x.axis(1), y.axis(1), ArrayMap(gi * in_pg + ii, gi * out_pg + oo,
                                                              label=f"whole groups of {groups}"))]
    per_group_slot, pg = (y.axis(1), out_pg) if transposed else (x.axis(1), in_pg)
    other, other_pg = (x.axis(1), in_pg) if transposed else (y.axis(1), out_pg)
    if pg == 1:
        return whole  # depthwise: a group is one input channel and its filters
    idx = np.arange(groups * other_pg)
    uniform: list[Fact] = [
        couple(w.axis(1), per_group_slot, Tile(groups)),  # weight[:, j] <-> position j of every group
        couple(other, other, ArrayMap(idx, idx % other_pg, label="same position in every group")),
    ]
    if not w.is_param:
        uniform.append(reduces(per_group_slot, "grouped conv with a computed weight"))
    return [alternatives([uniform, whole], [f"group={groups}: prune the same channels in every group",
                                            f"group={groups}: prune whole groups"])]


def _conv(node: OpView, transposed: bool) -> RuleResult:
    x, w, y = node.input("X"), node.input("W"), node.output(0)
    groups = node.int_attr("group", 1)
    facts: list[Fact] = [couple(x.axis(0), y.axis(0))]  # batch
    if (b := node.input_or_none("B")) is not None:
        facts.append(couple(y.axis(1), b.axis(0)))  # out[c] += B[c]
    # weight layout: Conv (M, C/g, k...), ConvTranspose (C, M/g, k...)
    grouped_w, per_group_w = 0, 1
    facts.append(couple(x.axis(1) if transposed else y.axis(1), w.axis(grouped_w)))  # filter c <-> channel c
    if groups == 1:
        facts.append(couple(y.axis(1) if transposed else x.axis(1), w.axis(per_group_w)))  # W[:, c]
        if not w.is_param:
            facts.append(reduces(x.axis(1), "convolution with a computed (non-initializer) weight"))
        return facts
    return facts + _grouped(x, y, w, groups, transposed)


@op_rule("onnx::Conv")
def conv(node: OpView) -> RuleResult:
    """Y[n, m] = sum_c W[m, c] * X[n, c] + B[m] (per group): filter m makes output channel m;
    input channel c feeds W[:, c]; grouped convs keep their group structure.
    """
    return _conv(node, transposed=False)


@op_rule("onnx::ConvTranspose")
def conv_transpose(node: OpView) -> RuleResult:
    """W[c] reads input channel c; W[:, m] makes output channel m (per group)."""
    return _conv(node, transposed=True)


@op_rule("onnx::Gemm")
def gemm(node: OpView) -> RuleResult:
    """Y[m, n] = alpha * sum_k A[m, k] B[k, n] + beta * C[m, n] (A, B optionally transposed)."""
    a, b, y = node.input("A"), node.input("B"), node.output(0)
    ta, tb = node.int_attr("transA", 0), node.int_attr("transB", 0)
    a_m, a_k = (1, 0) if ta else (0, 1)
    b_k, b_n = (1, 0) if tb else (0, 1)
    facts: list[Fact] = [couple(a.axis(a_k), b.axis(b_k)),  # contracted k: A[:, k] meets B[k, :]
                         couple(a.axis(a_m), y.axis(0)),   # rows m
                         couple(b.axis(b_n), y.axis(1))]   # columns n: B[:, n] makes output n
    if (c := node.input_or_none("C")) is not None:
        facts += broadcast_facts(c, y)  # Y[m, n] += C[m, n]
    if not (a.is_param or b.is_param):
        facts.append(reduces(a.axis(a_k), "Gemm contracts two computed tensors over this axis"))
    return facts


def _batch_axes(t: TensorView, y: TensorView, t_tail: int, y_tail: int) -> list[Fact]:
    """Couple the broadcast batch axes of a matmul operand with the output's."""
    facts: list[Fact] = []
    tb, yb = t.rank - t_tail, y.rank - y_tail
    for k in range(tb):
        yk = yb - tb + k
        if yk >= 0 and t.size(k) == y.size(yk) and t.size(k) != 1:
            facts.append(couple(t.axis(k), y.axis(yk)))
    return facts


@op_rule("onnx::MatMul")
def matmul(node: OpView) -> RuleResult:
    """Y[..., n, m] = sum_k A[..., n, k] B[..., k, m] with numpy batch broadcasting; the contracted
    axis is mixed unless one operand is an initializer (its zeroed slice absorbs removed channels).
    """
    a, b, y = node.input("A"), node.input("B"), node.output(0)
    facts: list[Fact] = []
    if a.rank == 1 and b.rank == 1:
        facts.append(couple(a.axis(0), b.axis(0)))
    elif a.rank == 1:
        facts += [couple(a.axis(0), b.axis(-2)), couple(b.axis(-1), y.axis(-1))] + _batch_axes(b, y, 2, 1)
    elif b.rank == 1:
        facts += [couple(a.axis(-1), b.axis(0)), couple(a.axis(-2), y.axis(-1))] + _batch_axes(a, y, 2, 1)
    else:
        facts += [couple(a.axis(-1), b.axis(-2)),  # contracted k
                  couple(a.axis(-2), y.axis(-2)),  # rows n
                  couple(b.axis(-1), y.axis(-1))]  # columns m
        facts += _batch_axes(a, y, 2, 2) + _batch_axes(b, y, 2, 2)
    if not (a.is_param or b.is_param):
        facts.append(reduces(a.axis(-1), "MatMul contracts two computed tensors over this axis"))
    return facts


_EINSUM_TERM = re.compile(r"^[a-zA-Z]*$")


@op_rule("onnx::Einsum")
def einsum(node: OpView) -> RuleResult:
    """Axes sharing a letter are coupled; letters missing from the output are contracted."""
    eq = str(node.attr("equation", "")).replace(" ", "")
    if "..." in eq or "->" not in eq:
        return decline(f"Einsum equation {eq!r} (ellipsis or implicit output) is not described")
    lhs, out = eq.split("->")
    terms, ins, y = lhs.split(","), node.inputs, node.output(0)
    if len(terms) != len(ins) or not all(_EINSUM_TERM.match(t) for t in [*terms, out]):
        return decline(f"Einsum equation {eq!r} does not match its {len(ins)} operands")
    first: dict[str, Sequence[int]] = {}
    facts: list[Fact] = []
    for ti, (term, t) in enumerate(zip(terms, ins)):
        for k, letter in enumerate(term):
            if t.size(k) == 1:
                continue
            if letter in first:
                facts.append(couple(ins[first[letter][0]].axis(first[letter][1]), t.axis(k)))
            else:
                first[letter] = (ti, k)
    for k, letter in enumerate(out):
        if letter in first:
            facts.append(couple(ins[first[letter][0]].axis(first[letter][1]), y.axis(k)))
    if not any(t.is_param for t in ins):
        facts += [reduces(ins[fi].axis(fk), f"Einsum contracts '{letter}' over computed tensors")
                  for letter, (fi, fk) in first.items() if letter not in out]
    return facts


# -- normalization ----------------------------------------------------------------------------

@op_rule("onnx::BatchNormalization")
def batch_norm(node: OpView) -> RuleResult:
    """Per-channel affine map: Y[c] = (X[c] - mean[c]) / sqrt(var[c] + eps) * scale[c] + B[c]."""
    x, y = node.input("X"), node.output(0)
    facts: list[Fact] = [couple(x.axis(k), y.axis(k)) for k in range(x.rank)]
    for port in ("scale", "B", "input_mean", "mean", "input_var", "var"):
        if (p := node.input_or_none(port)) is not None and p.rank == 1:
            facts.append(couple(x.axis(1), p.axis(0)))
    facts += [couple(x.axis(1), extra.axis(0)) for extra in node.outputs[1:] if extra.rank == 1]
    return facts


@op_rule("onnx::InstanceNormalization")
def instance_norm(node: OpView) -> RuleResult:
    """Statistics per (sample, channel) over the spatial axes: channels are independent."""
    x, y = node.input("input"), node.output(0)
    facts: list[Fact] = [couple(x.axis(k), y.axis(k)) for k in range(x.rank)]
    facts += [couple(x.axis(1), p.axis(0)) for p in node.inputs[1:]]
    facts += [reduces(x.axis(k), "InstanceNormalization normalizes over the spatial axes")
              for k in range(2, x.rank)]
    return facts


@op_rule("onnx::LayerNormalization")
def layer_norm(node: OpView) -> RuleResult:
    """Normalize over axes [axis, rank): those channels are mixed by the statistics (not
    zero-invariant); Scale and B act per channel.
    """
    x, y = node.input("X"), node.output(0)
    start = node.int_attr("axis", -1) % x.rank
    facts: list[Fact] = [couple(x.axis(k), y.axis(k)) for k in range(x.rank)]
    for p in node.inputs[1:]:
        facts += broadcast_facts(p, y)
    facts += [reduces(x.axis(k), "LayerNormalization normalizes over this axis") for k in range(start, x.rank)]
    for extra in node.outputs[1:]:  # Mean / InvStdDev: size-1 normalized axes
        facts += [couple(x.axis(k), extra.axis(k)) for k in range(start) if extra.rank == x.rank]
    return facts


@op_rule("onnx::GroupNormalization")
def group_norm(node: OpView) -> RuleResult:
    """Statistics per group of C/G channels: whole groups go together (zero-invariant); with one
    group it normalizes over all channels (mixed, not zero-invariant).
    """
    x, y = node.input("X"), node.output(0)
    groups = node.int_attr("num_groups", 1)
    c = x.size(1)
    facts: list[Fact] = [couple(x.axis(k), y.axis(k)) for k in range(x.rank)]
    for p in node.inputs[1:]:
        if p.size(0) != c:
            return decline(f"GroupNormalization with per-group scale (shape {p.shape}, opset 18 form) is "
                           "not described")
        facts.append(couple(x.axis(1), p.axis(0)))
    if groups == 1:
        return facts + [reduces(x.axis(1), "GroupNormalization with one group normalizes over all channels")]
    per = c // groups
    ia = np.arange(c)
    facts.append(couple(x.axis(1), x.axis(1), ArrayMap(ia, (ia // per) * per, label=f"group of {per}")))
    return facts


@op_rule("onnx::LpNormalization", "onnx::MeanVarianceNormalization")
def lp_norm(node: OpView) -> RuleResult:
    """Normalize along some axes: every axis passes through; the normalized ones are mixed."""
    x, y = node.input(0), node.output(0)
    if node.op == "onnx::LpNormalization":
        axes: Sequence[int] = [node.int_attr("axis", -1)]
    else:
        axes = list(node.attr("axes", (0, 2, 3)))  # type: ignore[call-overload]  # ints per the schema
    facts: list[Fact] = [couple(x.axis(k), y.axis(k)) for k in range(x.rank)]
    facts += [reduces(x.axis(a % x.rank), f"'{node.op}' normalizes over this axis") for a in axes]
    return facts


# -- concatenation, splitting, slicing, gathering ---------------------------------------------

@op_rule("onnx::Concat")
def concat(node: OpView) -> RuleResult:
    """Part j's channel c is channel offset_j + c of the result along `axis`."""
    y = node.output(0)
    return concat_facts(node.inputs, y, node.int_attr("axis", 0) % y.rank)


@op_rule("onnx::Split")
def split(node: OpView) -> RuleResult:
    """Part j's channel c is input channel offset_j + c along `axis` (sizes are rewritten)."""
    x = node.input("input")
    return concat_facts(node.outputs, x, node.int_attr("axis", 0) % x.rank)


def _ints(value: object) -> list[int] | None:
    if value is None:
        return None
    if isinstance(value, (int, np.integer)):
        return [int(value)]
    return [int(v) for v in value]  # type: ignore[union-attr]


@op_rule("onnx::Slice")
def slice_(node: OpView) -> RuleResult:
    """Y[c] = X[start + c*step] along each sliced axis; channels outside the slice are not read."""
    x, y = node.input("data"), node.output(0)
    starts, ends = _ints(node.attr("starts")), _ints(node.attr("ends"))
    if starts is None or ends is None:
        return decline("Slice bounds are computed at run time")
    axes = _ints(node.attr("axes")) or list(range(len(starts)))
    steps = _ints(node.attr("steps")) or [1] * len(starts)
    sliced = {a % x.rank: (s, st) for a, s, st in zip(axes, starts, steps)}
    facts: list[Fact] = [couple(x.axis(k), y.axis(k)) for k in range(x.rank) if k not in sliced]
    for k, (s, step) in sliced.items():
        n = x.size(k)
        if y.size(k) == 0:
            facts.append(free(x.axis(k)))
            continue
        if step < 0:
            facts.append(pin(x.axis(k), f"reversing slice (step {step})"))
            continue
        start = min(max(s + n if s < 0 else s, 0), n)
        if step != 1:  # removing an entry between two picked ones would shift the stride
            facts += [couple(y.axis(k), x.axis(k), Strided(start, step)), pin(x.axis(k), f"strided slice (step {step})")]
            continue
        facts.append(couple(y.axis(k), x.axis(k), Offset(start)))
        if x.is_param:  # entries outside the slice are unread only for these input shapes: keep them
            outside = [i for i in range(n) if not start <= i < start + y.size(k)]
            if outside:
                facts.append(pin(x.axis(k), "initializer entries outside a slice", outside))
    return facts


@op_rule("onnx::Gather")
def gather(node: OpView) -> RuleResult:
    """Y = X.take(indices, axis): the other axes of X pass through; constant indices read fixed
    positions of `axis` (kept, renumbered on rewrite); computed indices (an embedding lookup) read
    any position, so that axis stays whole.
    """
    x, idx, y = node.input("data"), node.input("indices"), node.output(0)
    axis = node.int_attr("axis", 0) % x.rank
    shift = idx.rank - 1
    facts: list[Fact] = [couple(x.axis(k), y.axis(k if k < axis else k + shift)) for k in range(x.rank) if k != axis]
    facts += [couple(idx.axis(j), y.axis(axis + j)) for j in range(idx.rank)]
    static = node.attr("indices")
    if static is not None:
        positions = sorted({int(p) % x.size(axis) for p in np.asarray(static).reshape(-1)})
        facts.append(pin(x.axis(axis), "read at constant positions", positions))
    else:
        facts.append(pin(x.axis(axis), "read at positions computed at run time (e.g. an embedding's rows)"))
    return facts


@op_rule("onnx::GatherElements")
def gather_elements(node: OpView) -> RuleResult:
    """Y[..i..] = X[..indices[..i..]..] along `axis`: other axes pass where sizes agree."""
    x, idx, y = node.input("data"), node.input("indices"), node.output(0)
    axis = node.int_attr("axis", 0) % x.rank
    facts: list[Fact] = [couple(idx.axis(k), y.axis(k)) for k in range(idx.rank)]
    facts += [couple(x.axis(k), y.axis(k)) for k in range(x.rank) if k != axis and x.size(k) == y.size(k)]
    return facts


# -- reshapes, permutations, broadcasting -----------------------------------------------------

@op_rule("onnx::Transpose")
def transpose(node: OpView) -> RuleResult:
    """Y axis k is X axis perm[k] (perm defaults to reversing the axes)."""
    x = node.input("data")
    perm = _ints(node.attr("perm")) or list(range(x.rank))[::-1]
    return permute_facts(x, node.output(0), [p % x.rank for p in perm])


@op_rule("onnx::Expand")
def expand(node: OpView) -> RuleResult:
    """Broadcast to a bigger shape: equal axes pass; expanded axes take the shape input (pinned)."""
    return broadcast_facts(node.input("input"), node.output(0))


@op_rule("onnx::Tile")
def tile(node: OpView) -> RuleResult:
    """Y[i + k*n] = X[i] along each repeated axis."""
    x, y = node.input("input"), node.output(0)
    facts: list[Fact] = []
    for k in range(x.rank):
        times = y.size(k) // max(x.size(k), 1)
        facts.append(couple(x.axis(k), y.axis(k), Tile(times) if times != 1 else None))
    return facts


@op_rule("onnx::DepthToSpace")
def depth_to_space(node: OpView) -> RuleResult:
    """DCR: output channel c gathers input channels c + k*C_out; CRD: [c*b^2, (c+1)*b^2)."""
    x, y = node.input("input"), node.output(0)
    bs = node.int_attr("blocksize", 1)
    mode = str(node.attr("mode", "DCR"))
    channel = couple(y.axis(1), x.axis(1), Block(bs * bs) if mode == "CRD" else Tile(bs * bs))
    return [couple(x.axis(0), y.axis(0)), channel]


@op_rule("onnx::SpaceToDepth")
def space_to_depth(node: OpView) -> RuleResult:
    """Output channels k*C + c come from input channel c."""
    x, y = node.input("input"), node.output(0)
    bs = node.int_attr("blocksize", 1)
    return [couple(x.axis(0), y.axis(0)), couple(x.axis(1), y.axis(1), Tile(bs * bs))]


@op_rule("onnx::Pad")
def pad(node: OpView) -> RuleResult:
    """Y[c + before] = X[c] on each padded axis (constant mode); other modes read the borders."""
    x, y = node.input("data"), node.output(0)
    pads = _ints(node.attr("pads"))
    if pads is None:
        return decline("Pad amounts are computed at run time")
    axes = [a % x.rank for a in (_ints(node.attr("axes")) or range(x.rank))]
    before = dict.fromkeys(range(x.rank), 0)
    after = dict.fromkeys(range(x.rank), 0)
    for i, a in enumerate(axes):
        before[a], after[a] = pads[i], pads[i + len(axes)]
    constant = str(node.attr("mode", "constant")) == "constant"
    facts: list[Fact] = []
    for k in range(x.rank):
        if before[k] == 0 and after[k] == 0:
            facts.append(couple(x.axis(k), y.axis(k)))
        elif constant and before[k] >= 0 and after[k] >= 0:
            facts.append(couple(x.axis(k), y.axis(k), Offset(before[k])))
            # the padding entries hold a constant: they stay, so the pad amounts never change
            padding = [*range(before[k]), *range(before[k] + x.size(k), y.size(k))]
            facts.append(pin(y.axis(k), "padding entries", padding))
    return facts


@op_rule("onnx::Resize", "onnx::Upsample")
def resize(node: OpView) -> RuleResult:
    """Interpolation per channel: axes whose size is unchanged (batch, channels) pass through."""
    x, y = node.input("X"), node.output(0)
    if str(node.attr("coordinate_transformation_mode", "")) == "tf_crop_and_resize":
        return decline("Resize in tf_crop_and_resize mode reads a region of interest")
    scales = node.attr("scales")
    scale_of = list(np.asarray(scales, dtype=np.float64).reshape(-1)) if scales is not None else []
    facts: list[Fact] = []
    for k in range(x.rank):
        same_scale = k >= len(scale_of) or scale_of[k] == 1.0
        if x.size(k) == y.size(k) and same_scale:
            facts.append(couple(x.axis(k), y.axis(k)))
    # roi, scales and sizes hold one entry per axis of X: never channels (a float scales
    # initializer is otherwise taken for a prunable parameter of its own)
    why = "Resize roi/scales/sizes hold one entry per axis"
    facts += [pin(s, why) for t in node.inputs[1:] for s in t.slots()]
    return facts


# -- pooling and reductions -------------------------------------------------------------------

@op_rule("onnx::MaxPool", "onnx::AveragePool", "onnx::LpPool", "onnx::GlobalAveragePool",
         "onnx::GlobalMaxPool", "onnx::GlobalLpPool")
def pool(node: OpView) -> RuleResult:
    """Pooling acts per (sample, channel) over the spatial axes: batch and channels pass."""
    x, y = node.input("X"), node.output(0)
    if y.rank != x.rank or x.rank < 2:
        return decline(f"pooling from shape {x.shape} to {y.shape} is not described")
    return [couple(x.axis(0), y.axis(0)), couple(x.axis(1), y.axis(1))]


@op_rule("onnx::ReduceMean", "onnx::ReduceSum", "onnx::ReduceMax", "onnx::ReduceMin", "onnx::ReduceProd",
         "onnx::ReduceL1", "onnx::ReduceL2", "onnx::ReduceLogSum", "onnx::ReduceLogSumExp",
         "onnx::ReduceSumSquare")
def reduce(node: OpView) -> RuleResult:
    """Reduce over `axes` (all when absent): kept axes pass through, reduced axes are mixed."""
    x = node.input("data")
    axes = _ints(node.attr("axes"))
    if not axes and node.int_attr("noop_with_empty_axes", 0):
        return [couple(x.axis(k), node.output(0).axis(k)) for k in range(x.rank)]
    return reduce_rule(axes or None, bool(node.int_attr("keepdims", 1)), node)


@op_rule("onnx::ArgMax", "onnx::ArgMin")
def arg_reduce(node: OpView) -> RuleResult:
    """Index of the extreme along `axis`: the other axes pass; `axis` is mixed."""
    return reduce_rule([node.int_attr("axis", 0)], bool(node.int_attr("keepdims", 1)), node)


def _along(node: OpView, mixed: set[int]) -> RuleResult:
    x = node.input(0)
    return [couple(x.axis(k), y.axis(k)) for y in node.outputs for k in range(x.rank)
            if k not in mixed and y.rank == x.rank]


@op_rule("onnx::Softmax", "onnx::LogSoftmax", "onnx::Hardmax")
def softmax(node: OpView) -> RuleResult:
    """Normalize along `axis` (opset < 13: over the flattened axes [axis, rank)): the other axes
    pass through; the normalized ones stay as they are.
    """
    x = node.input("input")
    if node.int_attr("opset", 13) >= 13:
        return _along(node, {node.int_attr("axis", -1) % x.rank})
    start = node.int_attr("axis", 1) % x.rank
    return _along(node, set(range(start, x.rank)))


@op_rule("onnx::CumSum", "onnx::TopK")
def along_axis(node: OpView) -> RuleResult:
    """Scan or select along one axis: the other axes pass through; that axis stays whole."""
    x = node.input(0)
    axis = node.attr("axis", -1)
    if axis is None:
        return decline("the axis is computed at run time")
    return _along(node, {int(axis) % x.rank})  # type: ignore[call-overload]  # int per the schema


@op_rule("onnx::Trilu")
def trilu(node: OpView) -> RuleResult:
    """Keep a triangle of the last two axes: leading axes pass; the matrix axes stay whole."""
    x = node.input("input")
    return _along(node, {x.rank - 2, x.rank - 1})


# -- attention --------------------------------------------------------------------------------

def _head_blocks(t: TensorView, heads: int) -> list[Fact]:
    """Channels of one head (a block of size/heads on the last axis) go together."""
    size = t.size(-1) // heads
    ia = np.arange(t.size(-1))
    return [couple(t.axis(-1), t.axis(-1), ArrayMap(ia, (ia // size) * size, label=f"head of {size}"))]


def _heads_map(a: TensorView, heads_a: int, b: TensorView, heads_b: int) -> Fact:
    """Head i of `a` goes with head i // (heads_a / heads_b) of `b` (GQA shares a KV head)."""
    per = heads_a // heads_b
    da, db = a.size(-1) // heads_a, b.size(-1) // heads_b
    ia = np.arange(heads_a)
    return couple(a.axis(-1), b.axis(-1), ArrayMap(ia * da, (ia // per) * db, label=f"heads, {per} per kv head"))


def _attention_3d(q: TensorView, k: TensorView, v: TensorView, y: TensorView, hq: int, hkv: int
                  ) -> RuleResult:
    if hq < 1 or hkv < 1 or hq % hkv or q.size(-1) % hq or k.size(-1) % hkv or v.size(-1) % hkv:
        return decline(f"head counts {hq}/{hkv} do not divide the hidden sizes")
    facts: list[Fact] = [couple(q.axis(0), y.axis(0)), couple(q.axis(1), y.axis(1)),  # batch, query tokens
                         couple(k.axis(1), v.axis(1))]  # key tokens
    facts += [couple(q.axis(0), t.axis(0)) for t in (k, v) if t.size(0) == q.size(0)]
    for t, h in ((q, hq), (k, hkv), (v, hkv), (y, hq)):
        facts += _head_blocks(t, h)  # whole heads only: the head size fixes the softmax scale
    facts += [_heads_map(q, hq, k, hkv), _heads_map(k, hkv, v, hkv), _heads_map(q, hq, y, hq)]
    return facts


def _attention_4d(q: TensorView, k: TensorView, v: TensorView, y: TensorView) -> RuleResult:
    hq, hkv = q.size(1), k.size(1)
    if hkv < 1 or hq % hkv:
        return decline(f"{hq} query heads cannot share {hkv} key/value heads")
    facts: list[Fact] = [couple(q.axis(0), y.axis(0)), couple(q.axis(1), y.axis(1)), couple(q.axis(2), y.axis(2)),
                         couple(k.axis(2), v.axis(2)), couple(v.axis(3), y.axis(3)),  # value dims pass through
                         couple(k.axis(1), v.axis(1))]
    facts.append(couple(k.axis(1), q.axis(1), Block(hq // hkv)) if hq != hkv else couple(k.axis(1), q.axis(1)))
    facts += [couple(q.axis(0), t.axis(0)) for t in (k, v) if t.size(0) == q.size(0)]
    facts.append(pin(q.axis(3), "the query/key head size fixes the softmax scale"))
    return facts


@op_rule("onnx::Attention")
def attention(node: OpView) -> RuleResult:
    """softmax(Q K^T * scale + mask) V per head. Whole heads pass through (GQA: a key/value head
    serves a block of query heads); 3-D inputs get their head-count attributes rewritten; value
    dims of 4-D inputs pass to the output. KV caches and extra outputs are not described."""
    q, k, v, y = node.input("Q"), node.input("K"), node.input("V"), node.output(0)
    if len(node.outputs) > 1 or node.has_input("past_key") or q.rank not in (3, 4) or k.rank != q.rank:
        return decline("attention with a KV cache or extra outputs is not described")
    facts: list[Fact] = []
    if (mask := node.input_or_none("attn_mask")) is not None and mask.rank == 4:
        if mask.size(1) != 1:
            return decline("per-head attention masks are not described")
        if mask.size(0) == q.size(0) and q.size(0) > 1:
            facts.append(couple(mask.axis(0), q.axis(0)))
    if q.rank == 4:
        inner = _attention_4d(q, k, v, y)
    else:
        inner = _attention_3d(q, k, v, y, node.int_attr("q_num_heads", 0), node.int_attr("kv_num_heads", 0))
    return inner if isinstance(inner, Declined) else [*facts, *inner]


@op_rule("com.microsoft::MultiHeadAttention")
def multi_head_attention(node: OpView) -> RuleResult:
    """onnxruntime's MultiHeadAttention on separate (batch, tokens, heads*dim) Q, K, V: whole heads."""
    if len(node.inputs) != 3 or len(node.outputs) != 1 or node.input(0).rank != 3:
        return decline("MultiHeadAttention with packed inputs, bias, masks or caches is not described")
    q, k, v = node.input(0), node.input(1), node.input(2)
    heads = node.int_attr("num_heads", 0)
    return _attention_3d(q, k, v, node.output(0), heads, heads)
