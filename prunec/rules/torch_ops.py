"""Built-in channel rules for ATen ops (the vocabulary torch.export produces).

Written with prunec.rules' public API only: each row or rule states its channel math in a comment.
Keys are 'aten::name' (overloads share a rule); in-place variants are listed next to their op.
"""

from __future__ import annotations

import re

import numpy as np

from prunec.ir.slots import ArrayMap, Block, Offset, Strided, Tile
from prunec.rules.api import Declined, Fact, OpView, RuleResult, alternatives, couple, decline, free, pin, reduces
from prunec.rules.families import (
    broadcast_facts,
    concat_facts,
    broadcasting,
    broadcasting_rule,
    creation,
    dividing,
    elementwise,
    leading_axes_rule,
    metadata_only,
    permute_facts,
    reduce_rule,
    reshape_facts,
    reshape_rule,
    singular_at_zero,
    spatial,
)
from prunec.rules.registry import RULES, op_rule

# -- families ---------------------------------------------------------------------------------

# out[c] = f(in[c])
elementwise(
    "aten::relu", "aten::relu_", "aten::relu6", "aten::gelu", "aten::gelu_", "aten::silu", "aten::silu_",
    "aten::sigmoid", "aten::sigmoid_", "aten::tanh", "aten::tanh_", "aten::hardswish", "aten::hardswish_",
    "aten::hardsigmoid", "aten::hardsigmoid_", "aten::leaky_relu", "aten::leaky_relu_", "aten::elu",
    "aten::elu_", "aten::selu", "aten::selu_", "aten::celu", "aten::celu_", "aten::mish", "aten::mish_",
    "aten::softplus", "aten::hardtanh", "aten::hardtanh_", "aten::hardshrink", "aten::softshrink",
    "aten::log_sigmoid", "aten::rrelu",
    "aten::threshold", "aten::threshold_",
    "aten::abs", "aten::abs_", "aten::neg", "aten::neg_", "aten::exp", "aten::exp_", "aten::exp2",
    "aten::expm1", "aten::expm1_", "aten::log1p", "aten::log1p_", "aten::sqrt", "aten::sqrt_",
    "aten::sin", "aten::sin_", "aten::cos", "aten::cos_", "aten::tan", "aten::tan_", "aten::asin",
    "aten::acos", "aten::atan", "aten::sinh", "aten::cosh", "aten::sinc", "aten::erf", "aten::erf_",
    "aten::erfc", "aten::erfc_", "aten::erfinv", "aten::i0", "aten::sign", "aten::sgn", "aten::signbit",
    "aten::floor", "aten::floor_", "aten::ceil", "aten::ceil_", "aten::round", "aten::round_", "aten::trunc",
    "aten::trunc_", "aten::frac", "aten::square", "aten::deg2rad", "aten::rad2deg", "aten::nan_to_num",
    "aten::nan_to_num_", "aten::isnan", "aten::isinf", "aten::isfinite", "aten::logical_not",
    "aten::bitwise_not", "aten::positive",
    # dropout is the identity in eval mode, which is how prunec traces
    "aten::dropout", "aten::dropout_", "aten::feature_dropout", "aten::alpha_dropout",
    "aten::feature_alpha_dropout", "aten::native_dropout",
    # copies and casts keep every element where it was
    "aten::clone", "aten::contiguous", "aten::detach", "aten::detach_", "aten::alias", "aten::lift_fresh_copy",
    "aten::to", "aten::_to_copy", "aten::lift_fresh",
    "aten::zeros_like", "aten::ones_like", "aten::full_like", "aten::empty_like", "aten::rand_like",
    "aten::randn_like", "aten::fill_", "aten::zero_", "aten::fill", "aten::bernoulli",
    "aten::clamp", "aten::clamp_", "aten::clip", "aten::clip_", "aten::clamp_min", "aten::clamp_min_",
    "aten::clamp_max", "aten::clamp_max_",
    "aten::_autocast_to_reduced_precision", "aten::_autocast_to_full_precision", "aten::dequantize",
)

# out[c] = f(in[c]) with f infinite at 0: a zeroed channel would turn into inf/NaN where a removed one
# is simply absent, so the channels stay prunable but are checked against the removal reference
singular_at_zero(
    "aten::log", "aten::log_", "aten::log2", "aten::log10", "aten::rsqrt", "aten::rsqrt_", "aten::reciprocal",
    "aten::reciprocal_", "aten::logit", "aten::logit_", "aten::lgamma", "aten::digamma",
)

# out[c] = f(a[c], b[c], ...) with numpy broadcasting; size-1 axes are not coupled
broadcasting(
    "aten::add", "aten::add_", "aten::sub", "aten::sub_", "aten::rsub", "aten::mul", "aten::mul_",
    "aten::maximum", "aten::minimum", "aten::fmax", "aten::fmin", "aten::atan2", "aten::atan2_",
    "aten::where", "aten::masked_fill", "aten::masked_fill_", "aten::eq", "aten::ne", "aten::lt", "aten::le",
    "aten::gt", "aten::ge", "aten::logical_and", "aten::logical_or", "aten::logical_xor",
    "aten::bitwise_and", "aten::bitwise_or", "aten::bitwise_xor", "aten::__and__", "aten::__or__",
    "aten::__xor__", "aten::__iand__", "aten::__ior__", "aten::__ixor__", "aten::addcmul", "aten::addcmul_",
    "aten::lerp", "aten::lerp_", "aten::copy_", "aten::copy", "aten::hypot", "aten::heaviside",
    "aten::copysign", "aten::logaddexp", "aten::logaddexp2",
)

# out[c] = a[c] / b[c] (and friends): as broadcasting, but a zeroed divisor channel divides by zero,
# so the divisor's channels are checked against the removal reference
dividing("other", "aten::div", "aten::div_", "aten::true_divide", "aten::true_divide_", "aten::floor_divide",
         "aten::floor_divide_", "aten::remainder", "aten::remainder_", "aten::fmod", "aten::fmod_",
         "aten::xlogy", "aten::xlogy_")
dividing("tensor2", "aten::addcdiv", "aten::addcdiv_")

# per-channel maps over the last k spatial axes: channels pass, space is not a channel axis
spatial(1, "aten::max_pool1d", "aten::avg_pool1d", "aten::adaptive_avg_pool1d", "aten::adaptive_max_pool1d",
        "aten::upsample_nearest1d", "aten::upsample_linear1d", "aten::reflection_pad1d",
        "aten::replication_pad1d", "aten::max_pool1d_with_indices", "aten::_upsample_nearest_exact1d")
spatial(2, "aten::max_pool2d", "aten::avg_pool2d", "aten::adaptive_avg_pool2d", "aten::adaptive_max_pool2d",
        "aten::max_pool2d_with_indices", "aten::upsample_nearest2d", "aten::upsample_bilinear2d",
        "aten::upsample_bicubic2d", "aten::_upsample_bilinear2d_aa", "aten::_upsample_bicubic2d_aa",
        "aten::_upsample_nearest_exact2d", "aten::reflection_pad2d", "aten::replication_pad2d",
        "aten::fractional_max_pool2d", "aten::lp_pool2d", "aten::grid_sampler_2d")
# tril/triu zero entries by their (row, column) position in the last two axes
spatial(2, "aten::tril", "aten::tril_", "aten::triu", "aten::triu_")
spatial(3, "aten::max_pool3d", "aten::avg_pool3d", "aten::adaptive_avg_pool3d", "aten::adaptive_max_pool3d",
        "aten::max_pool3d_with_indices", "aten::upsample_nearest3d", "aten::upsample_trilinear3d",
        "aten::reflection_pad3d", "aten::replication_pad3d", "aten::_upsample_nearest_exact3d")

# tensors of a size fixed by constants: outputs pinned
creation("aten::arange", "aten::zeros", "aten::ones", "aten::full", "aten::empty", "aten::scalar_tensor",
         "aten::rand", "aten::randn", "aten::randint", "aten::linspace", "aten::eye", "aten::tril_indices",
         "aten::triu_indices", "aten::new_zeros", "aten::new_ones", "aten::new_full", "aten::new_empty",
         "aten::empty_strided", "aten::tensor", "aten::_local_scalar_dense", "aten::item")

# ops that read only metadata
metadata_only("aten::_assert_tensor_metadata", "aten::_assert_scalar", "aten::sym_size", "aten::sym_numel", "aten::sym_stride",
              "aten::_assert_async", "aten::sym_constrain_range_for_size", "aten::_functional_assert_async",
              "aten::size", "aten::dim", "aten::numel")

# pure re-arrangements: a view of a parameter still holds that parameter's zeros
RULES.mark_view_like(
    "aten::view", "aten::view_as", "aten::reshape_as", "aten::reshape", "aten::_unsafe_view", "aten::flatten", "aten::unflatten", "aten::permute",
    "aten::transpose", "aten::t", "aten::squeeze", "aten::unsqueeze", "aten::expand", "aten::expand_as",
    "aten::contiguous", "aten::clone", "aten::detach", "aten::alias", "aten::to", "aten::_to_copy",
    "aten::type_as", "aten::lift_fresh_copy", "aten::movedim", "aten::swapaxes", "aten::swapdims",
    "aten::mT", "aten::mH", "aten::adjoint", "aten::_autocast_to_reduced_precision",
    "aten::_autocast_to_full_precision", "aten::repeat", "aten::repeat_interleave", "aten::reshape_as",
    "aten::view_as",
)

# -- reshapes and permutations ----------------------------------------------------------------

# any reshape: equal axes pass; splits/merges offer each factor as the channel carrier
RULES.register(("aten::view", "aten::reshape", "aten::_unsafe_view", "aten::flatten", "aten::unflatten",
                "aten::squeeze", "aten::squeeze_", "aten::unsqueeze", "aten::unsqueeze_", "aten::view_copy",
                "aten::_reshape_alias"), reshape_rule)


@op_rule("aten::reshape_as", "aten::view_as")
def reshape_as(node: OpView) -> RuleResult:
    """x.reshape_as(other): a reshape to `other`'s shape; `other` is read for its shape only."""
    other = node.input(1)
    return [*reshape_facts(node.input(0), node.output(0)), *(free(s) for s in other.slots())]


@op_rule("aten::permute", "aten::permute_copy")
def permute(node: OpView) -> RuleResult:
    """y axis k is x axis dims[k]."""
    x = node.input(0)
    dims = [int(d) % x.rank for d in node.attr("dims")]  # type: ignore[union-attr]
    return permute_facts(x, node.output(0), dims)


@op_rule("aten::transpose", "aten::transpose_", "aten::swapaxes", "aten::swapdims", "aten::movedim")
def transpose(node: OpView) -> RuleResult:
    """Swap two axes (movedim: move one axis)."""
    x = node.input(0)
    if node.op == "aten::movedim":
        src, dst = node.attr("source"), node.attr("destination")
        src_l = [int(s) % x.rank for s in (src if isinstance(src, (list, tuple)) else [src])]
        dst_l = [int(d) % x.rank for d in (dst if isinstance(dst, (list, tuple)) else [dst])]
        order = [k for k in range(x.rank) if k not in src_l]
        perm = [0] * x.rank
        for s, d in sorted(zip(src_l, dst_l), key=lambda p: p[1]):
            order.insert(d, s)
        perm = order
        return permute_facts(x, node.output(0), perm)
    d0 = int(node.attr("dim0", node.attr("axis0", 0))) % max(x.rank, 1)  # type: ignore[arg-type]
    d1 = int(node.attr("dim1", node.attr("axis1", 1))) % max(x.rank, 1)  # type: ignore[arg-type]
    perm = list(range(x.rank))
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return permute_facts(x, node.output(0), perm)


@op_rule("aten::t", "aten::t_", "aten::mT", "aten::numpy_T")
def matrix_transpose(node: OpView) -> RuleResult:
    """Reverse the last two axes (t: a 2-D transpose)."""
    x = node.input(0)
    perm = list(range(x.rank))
    if x.rank >= 2:
        perm[-1], perm[-2] = perm[-2], perm[-1]
    return permute_facts(x, node.output(0), perm)


@op_rule("aten::expand", "aten::expand_as", "aten::broadcast_to")
def expand(node: OpView) -> RuleResult:
    """Broadcast to a bigger shape: equal axes pass; an axis expanded from size 1 holds copies of one
    entry, so any of them may go (the size argument is resized): free. (GQA's repeat_kv expands a
    new axis; nn.MultiheadAttention expands its padding mask over heads.)"""
    x, y = node.input(0), node.output(0)
    facts = broadcast_facts(x, y)
    shift = y.rank - x.rank
    for k in range(y.rank):
        if k < shift or x.size(k - shift) == 1 and y.size(k) != 1:
            facts.append(free(y.axis(k)))
    facts += [free(s) for t in node.inputs[1:] for s in t.slots()]  # expand_as: `other` gives a shape
    return facts


@op_rule("aten::type_as")
def type_as(node: OpView) -> RuleResult:
    """y = x cast to other's dtype: x's axes pass; only other's dtype is read."""
    x, y = node.input(0), node.output(0)
    return [*(couple(x.axis(k), y.axis(k)) for k in range(x.rank)),
            *(free(s) for t in node.inputs[1:] for s in t.slots())]


@op_rule("aten::pow", "aten::pow_", "aten::float_power", "aten::float_power_")
def pow_(node: OpView) -> RuleResult:
    """y[c] = x[c] ** e[c] (either may be a scalar); a negative or computed exponent is infinite at a
    zeroed base, so the base's channels are then checked against the removal reference."""
    facts = list(broadcasting_rule(node))
    base = node.input_or_none("self")
    exponent = node.attr("exponent")
    if base is None or (isinstance(exponent, (int, float)) and exponent >= 0):
        return facts
    return facts + [reduces(base.axis(k), f"'{node.op}' with exponent {exponent!r} is not finite at zero")
                    for k in range(base.rank)]


type_as.positionwise = pow_.positionwise = True  # type: ignore[attr-defined]  # elementwise


@op_rule("aten::repeat")
def repeat(node: OpView) -> RuleResult:
    """y[i + k*n] = x[i] along each repeated axis."""
    x, y = node.input(0), node.output(0)
    shift = y.rank - x.rank
    facts: list[Fact] = []
    for k in range(x.rank):
        times = y.size(k + shift) // max(x.size(k), 1)
        facts.append(couple(x.axis(k), y.axis(k + shift), Tile(times) if times != 1 else None))
    return facts


@op_rule("aten::repeat_interleave")
def repeat_interleave(node: OpView) -> RuleResult:
    """y[i*r + k] = x[i] along `dim` (GQA's repeat_kv); without `dim` the input is flattened."""
    x, y = node.input(0), node.output(0)
    dim = node.attr("dim")
    if node.has_input("repeats") or dim is None:
        return decline("repeat_interleave with tensor repeats or no dim is not described")
    d = int(dim) % x.rank  # type: ignore[arg-type]
    r = y.size(d) // max(x.size(d), 1)
    facts: list[Fact] = [couple(x.axis(k), y.axis(k)) for k in range(x.rank) if k != d]
    facts.append(couple(x.axis(d), y.axis(d), Block(r)))
    return facts


# -- concatenation and slicing ----------------------------------------------------------------

@op_rule("aten::cat", "aten::concat", "aten::concatenate")
def cat(node: OpView) -> RuleResult:
    """Part j's channel c is channel offset_j + c of the result."""
    y = node.output(0)
    dim = int(node.attr("dim", 0)) % y.rank  # type: ignore[arg-type]
    return concat_facts(node.inputs, y, dim)


@op_rule("aten::stack")
def stack(node: OpView) -> RuleResult:
    """Every part's axes pass to the result; the new axis (one entry per part) is pinned."""
    y = node.output(0)
    dim = int(node.attr("dim", 0)) % y.rank  # type: ignore[arg-type]
    facts: list[Fact] = []
    for t in node.inputs:
        for k in range(t.rank):
            facts.append(couple(t.axis(k), y.axis(k if k < dim else k + 1)))
    return facts


@op_rule("aten::split", "aten::split_with_sizes", "aten::unsafe_split", "aten::unsafe_split_with_sizes")
def split(node: OpView) -> RuleResult:
    """Part j's channel c is channel offset_j + c of the input."""
    x = node.input(0)
    dim = int(node.attr("dim", 0)) % x.rank  # type: ignore[arg-type]
    return concat_facts(node.outputs, x, dim)


@op_rule("aten::chunk", "aten::unsafe_chunk")
def chunk(node: OpView) -> RuleResult:
    """Equal parts: part j's channel c is input channel j*n + c, and because `chunk` splits evenly
    again after pruning, channel c goes from every part together."""
    x = node.input(0)
    dim = int(node.attr("dim", 0)) % x.rank  # type: ignore[arg-type]
    outs = node.outputs
    sizes = {y.size(dim) for y in outs}
    facts = concat_facts(outs, x, dim)
    if len(sizes) == 1:
        for y in outs[1:]:
            facts.append(couple(outs[0].axis(dim), y.axis(dim)))
    elif len(outs) > 1:
        facts.append(pin(x.axis(dim), "chunk with unequal parts cannot stay a chunk after pruning"))
    return facts


@op_rule("aten::tensor_split")
def tensor_split(node: OpView) -> RuleResult:
    """tensor_split(x, n): n near-equal parts, recomputed from the size at run time. Equal parts stay
    equal only if every part loses the same positions (as for chunk); unequal parts or fixed split
    indices would move after pruning, so that axis is kept whole."""
    x = node.input(0)
    dim = int(node.attr("dim", 0)) % x.rank  # type: ignore[arg-type]
    sizes = {y.size(dim) for y in node.outputs}
    if node.attr("sections") is not None and len(sizes) == 1:
        return chunk(node)
    return [pin(x.axis(dim), "tensor_split into unequal parts or at fixed indices"),
            *concat_facts(node.outputs, x, dim)]


@op_rule("aten::unbind")
def unbind(node: OpView) -> RuleResult:
    """Output j is x[j] along `dim`: that axis indexes outputs and cannot shrink."""
    x = node.input(0)
    dim = int(node.attr("dim", 0)) % x.rank  # type: ignore[arg-type]
    facts: list[Fact] = [pin(x.axis(dim), "unbind: one output per entry of this axis")]
    for y in node.outputs:
        facts += [couple(x.axis(k), y.axis(k if k < dim else k - 1)) for k in range(x.rank) if k != dim]
    return facts


def _norm_index(i: object, size: int, default: int) -> int:
    if i is None:
        return default
    v = int(i)  # type: ignore[call-overload]
    if v < 0:
        v += size
    return max(0, min(v, size))


@op_rule("aten::slice", "aten::slice_copy")
def slice_(node: OpView) -> RuleResult:
    """y[c] = x[start + c*step] along `dim`; channels outside the slice are not read."""
    x, y = node.input(0), node.output(0)
    dim = int(node.attr("dim", 0)) % x.rank  # type: ignore[arg-type]
    start = _norm_index(node.attr("start"), x.size(dim), 0)
    step = int(node.attr("step", 1) or 1)  # type: ignore[arg-type]
    facts: list[Fact] = [couple(x.axis(k), y.axis(k)) for k in range(x.rank) if k != dim]
    if y.size(dim) == 0:
        facts.append(free(x.axis(dim)))
    elif step != 1:
        # removing an entry between two picked ones would shift the stride: keep the axis whole
        facts.append(couple(y.axis(dim), x.axis(dim), Strided(start, step)))
        facts.append(pin(x.axis(dim), f"strided slice (step {step})"))
    else:
        facts.append(couple(y.axis(dim), x.axis(dim), Offset(start)))
        if x.is_param:
            # entries of a parameter outside the slice are unread only for these input shapes
            # (a position table read as pos[:seq_len]): keep them
            outside = [i for i in range(x.size(dim)) if not start <= i < start + y.size(dim)]
            if outside:
                facts.append(pin(x.axis(dim), "parameter entries outside a slice (read for other input sizes)",
                                 outside))
    return facts


@op_rule("aten::narrow", "aten::narrow_copy")
def narrow(node: OpView) -> RuleResult:
    """y[c] = x[start + c] along `dim`."""
    x, y = node.input(0), node.output(0)
    dim = int(node.attr("dim", 0)) % x.rank  # type: ignore[arg-type]
    if node.has_input("start"):
        return decline("narrow with a tensor start is not described")
    start = _norm_index(node.attr("start"), x.size(dim), 0)
    facts: list[Fact] = [couple(x.axis(k), y.axis(k)) for k in range(x.rank) if k != dim]
    facts.append(couple(y.axis(dim), x.axis(dim), Offset(start)))
    return facts


@op_rule("aten::select", "aten::select_copy")
def select(node: OpView) -> RuleResult:
    """y = x[index] along `dim`: that one channel must stay; the others are not read."""
    x, y = node.input(0), node.output(0)
    dim = int(node.attr("dim", 0)) % x.rank  # type: ignore[arg-type]
    index = int(node.attr("index", 0)) % x.size(dim)  # type: ignore[arg-type]
    facts: list[Fact] = [pin(x.axis(dim), "selected by a constant index", [index])]
    facts += [couple(x.axis(k), y.axis(k if k < dim else k - 1)) for k in range(x.rank) if k != dim]
    return facts


@op_rule("aten::constant_pad_nd", "aten::pad")
def constant_pad(node: OpView) -> RuleResult:
    """y[c + before] = x[c] on each padded axis; padding entries hold a constant."""
    x, y = node.input(0), node.output(0)
    mode = node.attr("mode", "constant")
    pads = [int(p) for p in node.attr("pad")]  # type: ignore[union-attr]
    if mode != "constant":
        return leading_axes_rule(len(pads) // 2)(node)  # type: ignore[operator]
    before = [0] * x.rank
    for i in range(len(pads) // 2):
        before[x.rank - 1 - i] = pads[2 * i]
    facts: list[Fact] = []
    for k in range(x.rank):
        if before[k] == 0 and x.size(k) == y.size(k):
            facts.append(couple(x.axis(k), y.axis(k)))
        elif before[k] >= 0:
            facts.append(couple(x.axis(k), y.axis(k), Offset(before[k])))
    return facts


# -- convolution, linear, matmul ------------------------------------------------------------

def _conv_facts(node: OpView, transposed: bool) -> RuleResult:
    x, y = node.input("input"), node.output(0)
    w = node.input("weight")
    b = node.input_or_none("bias")
    groups = node.int_attr("groups", 1)
    cx = 1 if x.rank == w.rank else 0  # unbatched inputs have no batch axis
    facts: list[Fact] = []
    if cx == 1:
        facts.append(couple(x.axis(0), y.axis(0)))  # batch
    # weight layout: conv (out, in/groups, k...), conv_transpose (in, out/groups, k...)
    w_out, w_in = (1, 0) if transposed else (0, 1)
    c_in, c_out = x.size(cx), y.size(cx)
    if b is not None:
        facts.append(couple(y.axis(cx), b.axis(0)))  # out[c] += bias[c]
    absorbed = w.is_param
    if groups == 1:
        if transposed:
            facts.append(couple(y.axis(cx), w.axis(w_out)))  # out[c] <- weight[:, c]
        else:
            facts.append(couple(y.axis(cx), w.axis(w_out)))  # out[c] <- filter c
        facts.append(couple(x.axis(cx), w.axis(w_in)))  # in[c] -> weight[:, c] (or weight[c])
        if not absorbed:
            facts.append(reduces(x.axis(cx), "conv with a computed (non-parameter) weight"))
        return facts
    in_per_group, out_per_group = c_in // groups, c_out // groups
    # weight rows/cols along the grouped axis run over every group's channels in order
    grouped_axis = w_out if not transposed else w_in
    per_group_axis = w_in if not transposed else w_out
    if not transposed:
        facts.append(couple(y.axis(cx), w.axis(grouped_axis)))  # out[c] <- filter c
    else:
        facts.append(couple(x.axis(cx), w.axis(grouped_axis)))  # in[c] -> weight[c]
    # per-group axis of the weight (size in/groups for conv, out/groups for conv_transpose)
    whole_groups: list[Fact] = [
        couple(x.axis(cx), y.axis(cx), ArrayMap(*_group_pairs(groups, in_per_group, out_per_group),
                                                 label=f"whole groups of {groups}"))]
    per_group_slot = x.axis(cx) if not transposed else y.axis(cx)
    pg = in_per_group if not transposed else out_per_group
    other = y.axis(cx) if not transposed else x.axis(cx)
    other_pg = out_per_group if not transposed else in_per_group
    if pg == 1:
        return facts + whole_groups  # depthwise: a group is one input channel and its filters
    uniform: list[Fact] = [
        couple(w.axis(per_group_axis), per_group_slot, Tile(groups)),  # weight[:, j] <-> channel j of every group
        couple(other, other, ArrayMap(*_same_position(groups, other_pg), label="same position in every group")),
    ]
    if not absorbed:
        uniform.append(reduces(per_group_slot, "grouped conv with a computed weight"))
    return facts + [alternatives([uniform, whole_groups],
                                 [f"groups={groups}: prune the same channels in every group",
                                  f"groups={groups}: prune whole groups"])]


def _group_pairs(groups: int, in_pg: int, out_pg: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (input channel, output channel) within the same group: a whole group goes together."""
    gi = np.repeat(np.arange(groups), in_pg * out_pg)
    ii = np.tile(np.repeat(np.arange(in_pg), out_pg), groups)
    oo = np.tile(np.arange(out_pg), groups * in_pg)
    return gi * in_pg + ii, gi * out_pg + oo


def _same_position(groups: int, per_group: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (g*n + k, k): channel k of every group goes together."""
    idx = np.arange(groups * per_group)
    return idx, idx % per_group


@op_rule("aten::conv1d", "aten::conv2d", "aten::conv3d", "aten::_convolution", "aten::convolution",
         "aten::cudnn_convolution", "aten::mkldnn_convolution")
def conv(node: OpView) -> RuleResult:
    """Filter c makes output channel c; input channel c feeds weight[:, c]; grouped convs keep
    their group structure (same positions in every group, or whole groups)."""
    return _conv_facts(node, transposed=bool(node.attr("transposed", False)))


@op_rule("aten::conv_transpose1d", "aten::conv_transpose2d", "aten::conv_transpose3d")
def conv_transpose(node: OpView) -> RuleResult:
    """weight[c] reads input channel c; weight[:, c] makes output channel c (per group)."""
    return _conv_facts(node, transposed=True)


@op_rule("aten::linear")
def linear(node: OpView) -> RuleResult:
    """out[..., o] = sum_i x[..., i] * W[o, i] + b[o]."""
    x, w, y = node.input("input"), node.input("weight"), node.output(0)
    facts: list[Fact] = [couple(x.axis(k), y.axis(k)) for k in range(x.rank - 1)]
    facts.append(couple(x.axis(-1), w.axis(-1)))  # in[i] -> W[:, i]
    if w.rank == 2:
        facts.append(couple(y.axis(-1), w.axis(0)))  # out[o] <- W[o]
    if (b := node.input_or_none("bias")) is not None:
        facts.append(couple(y.axis(-1), b.axis(-1)))  # out[o] += b[o]
    if not w.is_param:
        facts.append(reduces(x.axis(-1), "linear with a computed (non-parameter) weight"))
    return facts


def _matmul_facts(node: OpView, a_port: int, b_port: int, out_index: int = 0) -> list[Fact]:
    """y = a @ b with numpy-style batch broadcasting; the contracted axis is mixed unless one
    operand is a parameter (its zeroed slice absorbs the removed channels)."""
    a, b, y = node.input(a_port), node.input(b_port), node.output(out_index)
    facts: list[Fact] = []
    if a.rank == 1 and b.rank == 1:
        facts.append(couple(a.axis(0), b.axis(0)))
        contracted = a.axis(0)
    elif a.rank == 1:
        facts.append(couple(a.axis(0), b.axis(-2)))
        facts.append(couple(b.axis(-1), y.axis(-1)))
        facts += _batch_facts(b, y, 2, 1)
        contracted = a.axis(0)
    elif b.rank == 1:
        facts.append(couple(a.axis(-1), b.axis(0)))
        facts.append(couple(a.axis(-2), y.axis(-1)))
        facts += _batch_facts(a, y, 2, 1)
        contracted = a.axis(-1)
    else:
        facts.append(couple(a.axis(-1), b.axis(-2)))  # contracted k
        facts.append(couple(a.axis(-2), y.axis(-2)))  # rows n
        facts.append(couple(b.axis(-1), y.axis(-1)))  # cols m
        facts += _batch_facts(a, y, 2, 2)
        facts += _batch_facts(b, y, 2, 2)
        contracted = a.axis(-1)
    if not (a.is_param or b.is_param):
        facts.append(reduces(contracted, f"'{node.op}' contracts two computed tensors over this axis"))
    return facts


def _batch_facts(t: object, y: object, t_tail: int, y_tail: int) -> list[Fact]:
    from prunec.rules.api import TensorView

    assert isinstance(t, TensorView) and isinstance(y, TensorView)
    facts: list[Fact] = []
    tb, yb = t.rank - t_tail, y.rank - y_tail
    for k in range(tb):
        yk = yb - tb + k
        if yk >= 0 and t.size(k) == y.size(yk):
            facts.append(couple(t.axis(k), y.axis(yk)))
    return facts


@op_rule("aten::matmul", "aten::mm", "aten::bmm", "aten::dot", "aten::mv", "aten::vdot")
def matmul(node: OpView) -> RuleResult:
    """y[..., n, m] = sum_k a[..., n, k] * b[..., k, m]."""
    return _matmul_facts(node, 0, 1)


@op_rule("aten::addmm", "aten::baddbmm", "aten::addbmm", "aten::addmv")
def addmm(node: OpView) -> RuleResult:
    """y = beta * self + alpha * (a @ b); `self` broadcasts onto the product."""
    facts = _matmul_facts(node, 1, 2)
    facts += broadcast_facts(node.input(0), node.output(0))
    return facts


_EINSUM_TERM = re.compile(r"[a-zA-Z]")


@op_rule("aten::einsum")
def einsum(node: OpView) -> RuleResult:
    """Axes sharing a letter are coupled; letters missing from the output are contracted."""
    eq = str(node.attr("equation")).replace(" ", "")
    if "..." in eq or "->" not in eq:
        return decline(f"einsum equation {eq!r} (ellipsis or implicit output) is not described")
    lhs, out = eq.split("->")
    terms = lhs.split(",")
    ins = node.inputs
    if len(terms) != len(ins):
        return decline(f"einsum equation {eq!r} does not match {len(ins)} operands")
    y = node.output(0)
    first: dict[str, tuple[int, int]] = {}
    facts: list[Fact] = []
    any_param = any(t.is_param for t in ins)
    for ti, (term, t) in enumerate(zip(terms, ins)):
        for k, letter in enumerate(term):
            if t.size(k) == 1:
                continue
            if letter in first:
                fi, fk = first[letter]
                facts.append(couple(ins[fi].axis(fk), t.axis(k)))
            else:
                first[letter] = (ti, k)
    for k, letter in enumerate(out):
        if letter in first:
            fi, fk = first[letter]
            facts.append(couple(ins[fi].axis(fk), y.axis(k)))
    for letter, (fi, fk) in first.items():
        if letter not in out and not any_param:
            facts.append(reduces(ins[fi].axis(fk), f"einsum contracts '{letter}' over computed tensors"))
    return facts


# -- normalization ----------------------------------------------------------------------------

@op_rule("aten::batch_norm", "aten::_native_batch_norm_legit_no_training", "aten::_native_batch_norm_legit",
         "aten::native_batch_norm", "aten::instance_norm", "aten::_batch_norm_impl_index",
         "aten::cudnn_batch_norm", "aten::_native_batch_norm_legit_functional")
def batch_norm(node: OpView) -> RuleResult:
    """Per-channel affine map: out[c] = (x[c] - mean[c]) / sqrt(var[c]) * w[c] + b[c]. With batch
    statistics (training=True, instance norm, no running stats) mean and var are taken over every
    other axis, so entries of those axes are mixed (weight standardization reshapes a conv's input
    channels into one)."""
    x = node.input("input")
    y = node.output(0)
    facts: list[Fact] = [couple(x.axis(k), y.axis(k)) for k in range(x.rank)]
    if _uses_batch_statistics(node):
        facts += [reduces(x.axis(k), f"'{node.op}' takes statistics over this axis")
                  for k in range(x.rank) if k != 1 and x.size(k) > 1]
    for port in ("weight", "bias", "running_mean", "running_var"):
        if (p := node.input_or_none(port)) is not None:
            facts.append(couple(x.axis(1), p.axis(0)))
    for extra in node.outputs[1:]:  # saved mean / rstd: one per channel, or empty
        if extra.rank == 1 and extra.size(0) == x.size(1):
            facts.append(couple(x.axis(1), extra.axis(0)))
    return facts


def _uses_batch_statistics(node: OpView) -> bool:
    if node.op == "aten::_native_batch_norm_legit_no_training":
        return False
    flag = node.attr("use_input_stats" if node.op == "aten::instance_norm" else "training", False)
    return bool(flag) or node.input_or_none("running_mean") is None


@op_rule("aten::layer_norm", "aten::native_layer_norm", "aten::rms_norm", "aten::_fused_rms_norm")
def layer_norm(node: OpView) -> RuleResult:
    """Normalize over the last len(normalized_shape) axes: those channels are mixed by the
    statistics (not zero-invariant), and w/b scale them per channel."""
    x, y = node.input("input"), node.output(0)
    norm = list(node.attr("normalized_shape"))  # type: ignore[call-overload]
    n = len(norm)
    facts: list[Fact] = [couple(x.axis(k), y.axis(k)) for k in range(x.rank)]
    for port in ("weight", "bias"):
        if (p := node.input_or_none(port)) is not None:
            facts += [couple(x.axis(x.rank - n + k), p.axis(k)) for k in range(n)]
    facts += [reduces(x.axis(x.rank - n + k), f"'{node.op}' normalizes over this axis") for k in range(n)]
    for extra in node.outputs[1:]:  # mean / rstd have size-1 normalized axes
        facts += [couple(x.axis(k), extra.axis(k)) for k in range(x.rank - n) if extra.rank == x.rank]
    return facts


@op_rule("aten::group_norm", "aten::native_group_norm")
def group_norm(node: OpView) -> RuleResult:
    """Statistics per group of C/G channels: whole groups go together (zero-invariant); with a single
    group it is a LayerNorm over channels (channels mixed, not zero-invariant)."""
    x, y = node.input("input"), node.output(0)
    groups = node.int_attr("num_groups", node.int_attr("group", 1))
    c = x.size(1)
    facts: list[Fact] = [couple(x.axis(k), y.axis(k)) for k in range(x.rank)]
    for port in ("weight", "bias"):
        if (p := node.input_or_none(port)) is not None:
            facts.append(couple(x.axis(1), p.axis(0)))
    for extra in node.outputs[1:]:  # mean / rstd (N, G)
        if extra.rank == 2:
            facts.append(couple(x.axis(0), extra.axis(0)))
    if groups == 1:
        facts.append(reduces(x.axis(1), "GroupNorm with one group normalizes over all channels"))
        return facts
    per = c // groups
    ia = np.arange(c)
    facts.append(couple(x.axis(1), x.axis(1), ArrayMap(ia, (ia // per) * per, label=f"group of {per}")))
    return facts


# -- attention, embedding and friends -------------------------------------------------------

@op_rule("aten::scaled_dot_product_attention")
def sdpa(node: OpView) -> RuleResult:
    """softmax(q k^T * scale + mask) v per head: heads pass through (GQA: a KV head serves a block
    of query heads); q/k head dims are contracted (mixed); v head dims pass to the output."""
    q, k, v, y = node.input("query"), node.input("key"), node.input("value"), node.output(0)
    facts: list[Fact] = []
    lead = q.rank - 3
    for i in range(lead):
        for t in (k, v):
            if t.size(i) == q.size(i):
                facts.append(couple(q.axis(i), t.axis(i)))
        facts.append(couple(q.axis(i), y.axis(i)))
    hq, hk = q.size(-3), k.size(-3)
    facts.append(couple(q.axis(-3), y.axis(-3)))
    if hq == hk:
        facts += [couple(q.axis(-3), k.axis(-3)), couple(q.axis(-3), v.axis(-3))]
    elif hk > 0 and hq % hk == 0:
        facts += [couple(k.axis(-3), q.axis(-3), Block(hq // hk)), couple(k.axis(-3), v.axis(-3))]
    facts.append(couple(q.axis(-2), y.axis(-2)))  # query tokens
    facts.append(couple(k.axis(-2), v.axis(-2)))  # key tokens
    facts.append(couple(q.axis(-1), k.axis(-1)))  # contracted head dim
    facts.append(reduces(q.axis(-1), "attention scores sum over the q/k head dimension"))
    facts.append(couple(v.axis(-1), y.axis(-1)))
    if (m := node.input_or_none("attn_mask")) is not None:
        scores_shape = (*q.shape[:-1], k.size(-2))
        shift = len(scores_shape) - m.rank
        for i in range(m.rank):
            target = i + shift
            if m.size(i) != scores_shape[target] or m.size(i) == 1:
                continue
            if target == len(scores_shape) - 1:
                facts.append(couple(m.axis(i), k.axis(-2)))
            elif target < q.rank - 1:
                facts.append(couple(m.axis(i), q.axis(target)))
    return facts


@op_rule("aten::softmax", "aten::_softmax", "aten::log_softmax", "aten::_log_softmax",
         "aten::_safe_softmax", "aten::cumsum", "aten::cumprod", "aten::logcumsumexp", "aten::flip",
         "aten::roll", "aten::sort", "aten::argsort", "aten::cummax", "aten::cummin", "aten::topk")
def along_axis(node: OpView) -> RuleResult:
    """Ops that mix or reorder entries along `dim` (or `dims`/`shifts` axes): the other axes pass
    through and those axes stay as they are (pinned)."""
    x = node.input(0)
    dims = node.attr("dim", node.attr("dims"))
    if dims is None or (isinstance(dims, (list, tuple)) and not dims and node.op == "aten::roll"):
        return decline("no axis given: the op runs over the flattened tensor")
    mixed = {int(d) % x.rank for d in (dims if isinstance(dims, (list, tuple)) else [dims])}
    return [couple(x.axis(k), y.axis(k)) for y in node.outputs for k in range(x.rank)
            if k not in mixed and y.rank == x.rank]


@op_rule("aten::glu")
def glu(node: OpView) -> RuleResult:
    """y[c] = a[c] * sigmoid(b[c]) where a, b are the two halves of x along `dim`."""
    x, y = node.input(0), node.output(0)
    dim = int(node.attr("dim", -1)) % x.rank  # type: ignore[arg-type]
    half = y.size(dim)
    facts: list[Fact] = [couple(x.axis(k), y.axis(k)) for k in range(x.rank) if k != dim]
    facts += [couple(y.axis(dim), x.axis(dim), Offset(0)), couple(y.axis(dim), x.axis(dim), Offset(half))]
    return facts


@op_rule("aten::embedding")
def embedding(node: OpView) -> RuleResult:
    """y[..., d] = weight[ids[...], d]: the embedding columns are channels; the vocabulary is not."""
    w, ids, y = node.input("weight"), node.input("indices"), node.output(0)
    facts: list[Fact] = [couple(ids.axis(k), y.axis(k)) for k in range(ids.rank)]
    facts.append(couple(w.axis(1), y.axis(-1)))
    return facts


@op_rule("aten::prelu", "aten::_prelu_kernel")
def prelu(node: OpView) -> RuleResult:
    """One slope per channel (or a single shared slope)."""
    x, w, y = node.input(0), node.input(1), node.output(0)
    facts: list[Fact] = [couple(x.axis(k), y.axis(k)) for k in range(x.rank)]
    if w.rank == 1 and w.size(0) > 1 and x.rank >= 2:
        facts.append(couple(x.axis(1), w.axis(0)))
    return facts


@op_rule("aten::pixel_shuffle")
def pixel_shuffle(node: OpView) -> RuleResult:
    """Output channel c gathers input channels [c*r^2, (c+1)*r^2)."""
    x, y = node.input(0), node.output(0)
    r = node.int_attr("upscale_factor", 1)
    c = x.rank - 3
    facts: list[Fact] = [couple(x.axis(k), y.axis(k)) for k in range(c)]
    facts.append(couple(y.axis(c), x.axis(c), Block(r * r)))
    return facts


@op_rule("aten::pixel_unshuffle")
def pixel_unshuffle(node: OpView) -> RuleResult:
    """Input channel c spreads to output channels [c*r^2, (c+1)*r^2)."""
    x, y = node.input(0), node.output(0)
    r = node.int_attr("downscale_factor", 1)
    c = x.rank - 3
    facts: list[Fact] = [couple(x.axis(k), y.axis(k)) for k in range(c)]
    facts.append(couple(x.axis(c), y.axis(c), Block(r * r)))
    return facts


@op_rule("aten::im2col")
def im2col(node: OpView) -> RuleResult:
    """F.unfold: output row c*K + k holds kernel position k of input channel c (K = kernel size)."""
    x, y = node.input(0), node.output(0)
    c = x.rank - 3
    k = y.size(c) // max(x.size(c), 1)
    facts: list[Fact] = [couple(x.axis(i), y.axis(i)) for i in range(c)]
    facts.append(couple(x.axis(c), y.axis(c), Block(k)))
    return facts


@op_rule("aten::col2im")
def col2im(node: OpView) -> RuleResult:
    """F.fold: input row c*K + k is added at kernel position k of output channel c."""
    x, y = node.input(0), node.output(0)
    c = y.rank - 3
    k = x.size(c) // max(y.size(c), 1)
    facts: list[Fact] = [couple(x.axis(i), y.axis(i)) for i in range(c)]
    facts.append(couple(y.axis(c), x.axis(c), Block(k)))
    return facts


@op_rule("aten::unfold")
def unfold(node: OpView) -> RuleResult:
    """Tensor.unfold(dim, size, step): windows along `dim` become a new last axis; the other axes
    pass through."""
    x, y = node.input(0), node.output(0)
    dim = node.int_attr("dimension", 0) % x.rank
    return [couple(x.axis(k), y.axis(k)) for k in range(x.rank) if k != dim]


@op_rule("aten::sum", "aten::mean", "aten::amax", "aten::amin", "aten::nansum", "aten::nanmean",
         "aten::prod", "aten::var", "aten::std", "aten::var_mean", "aten::std_mean", "aten::logsumexp",
         "aten::linalg_vector_norm", "aten::norm", "aten::max", "aten::min", "aten::argmax",
         "aten::argmin", "aten::all", "aten::any", "aten::count_nonzero", "aten::aminmax")
def reduction(node: OpView) -> RuleResult:
    """Reduce over `dim`: kept axes pass through, reduced axes are mixed."""
    dims = node.attr("dim")
    if isinstance(dims, int):
        dims = [dims]
    keepdim = bool(node.attr("keepdim", False))
    if node.op in ("aten::max", "aten::min") and len(node.inputs) > 1:
        return broadcast_facts(node.input(0), node.output(0)) + broadcast_facts(node.input(1), node.output(0))
    return reduce_rule(list(dims) if dims is not None else None, keepdim, node)  # type: ignore[arg-type]


@op_rule("aten::channel_shuffle", "aten::native_channel_shuffle")
def channel_shuffle(node: OpView) -> RuleResult:
    """y[j*g + i] = x[i*(C/g) + j]: position j of every group goes together, keeping g groups."""
    x, y = node.input(0), node.output(0)
    g = node.int_attr("groups", 1)
    c = x.size(1)
    per = c // g
    i, j = np.meshgrid(np.arange(g), np.arange(per), indexing="ij")
    src = (i * per + j).ravel()
    dst = (j * g + i).ravel()
    facts: list[Fact] = [couple(x.axis(k), y.axis(k)) for k in range(x.rank) if k != 1]
    facts.append(couple(x.axis(1), y.axis(1), ArrayMap(src, dst, label=f"channel shuffle g={g}")))
    facts.append(couple(x.axis(1), x.axis(1), ArrayMap(src, j.ravel(), label="same position in every group")))
    return facts


@op_rule("aten::index", "aten::_unsafe_index")
def index(node: OpView) -> RuleResult:
    """x[i0, i1, ...] with index tensors on some axes: non-indexed axes pass through; indexed
    axes are read at fixed positions (pinned); the index tensors' axes become output axes."""
    x, y = node.input(0), node.output(0)
    spec = node.attr("indices") or ()
    indexed = [k for k, p in enumerate(spec) if p is not None]  # type: ignore[union-attr]
    if not indexed:
        return [couple(x.axis(k), y.axis(k)) for k in range(x.rank)]
    idx_tensors = [node.input(p) for p in spec if isinstance(p, str)]  # type: ignore[union-attr]
    if len(idx_tensors) != len(indexed):
        return decline("index with non-tensor indices is not described")
    nb = max(t.rank for t in idx_tensors)
    consecutive = indexed == list(range(indexed[0], indexed[-1] + 1))
    first = indexed[0] if consecutive else 0
    facts: list[Fact] = []
    out = 0
    for k in range(x.rank):
        if k == first and consecutive or (not consecutive and out == 0):
            out += nb
        if k in indexed:
            continue
        if y.size(out) == x.size(k):
            facts.append(couple(x.axis(k), y.axis(out)))
        out += 1
    for t in idx_tensors:
        shift = first + nb - t.rank
        facts += [couple(t.axis(k), y.axis(k + shift)) for k in range(t.rank)
                  if t.size(k) == y.size(k + shift) and t.size(k) > 1]
    return facts


@op_rule("aten::index_select")
def index_select(node: OpView) -> RuleResult:
    """y = x.index_select(dim, index): other axes pass; `dim` is read at fixed positions."""
    x, y = node.input("self"), node.output(0)
    dim = int(node.attr("dim", 0)) % x.rank  # type: ignore[arg-type]
    facts: list[Fact] = [couple(x.axis(k), y.axis(k)) for k in range(x.rank) if k != dim]
    facts.append(couple(node.input("index").axis(0), y.axis(dim)))
    return facts


@op_rule("aten::gather")
def gather(node: OpView) -> RuleResult:
    """y[..i..] = x[..index[..i..]..] along `dim`: other axes pass where sizes agree."""
    x, idx, y = node.input("self"), node.input("index"), node.output(0)
    dim = int(node.attr("dim", 0)) % x.rank  # type: ignore[arg-type]
    facts: list[Fact] = [couple(idx.axis(k), y.axis(k)) for k in range(idx.rank)]
    facts += [couple(x.axis(k), y.axis(k)) for k in range(x.rank) if k != dim and x.size(k) == y.size(k)]
    return facts
