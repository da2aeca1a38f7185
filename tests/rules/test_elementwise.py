"""Rule soundness: every elementwise unary op and every broadcasting n-ary op of the rule table."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from prunec.rules import RULES
from prunec.rules.families import broadcasting_rule, same_shape_rule, singular_rule
from tests.rules.harness import Case, make_tests, one_per_rule
from tests.rules.models import Fn, Fork, conv_sandwich, image

aten = torch.ops.aten


def _away(h: torch.Tensor) -> torch.Tensor:
    """Exactly 0 where h is 0 (a zeroed channel), at least 0.5 in magnitude elsewhere.

    A divisor that is singular only in removed channels and well conditioned everywhere else.
    """
    return h.sign() * (h.abs() + 0.5)


# op key -> f(h), h the producer's output; `h.abs() + 0.5` keeps a domain-limited op finite
UNARY: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": aten.relu,
    "relu_": aten.relu_,
    "relu6": aten.relu6,
    "gelu": aten.gelu,
    "gelu_": aten.gelu_,
    "silu": aten.silu,
    "silu_": aten.silu_,
    "sigmoid": aten.sigmoid,
    "sigmoid_": aten.sigmoid_,
    "tanh": aten.tanh,
    "tanh_": aten.tanh_,
    "hardswish": aten.hardswish,
    "hardswish_": aten.hardswish_,
    "hardsigmoid": aten.hardsigmoid,
    "hardsigmoid_": aten.hardsigmoid_,
    "leaky_relu": aten.leaky_relu,
    "leaky_relu_": aten.leaky_relu_,
    "elu": aten.elu,
    "elu_": aten.elu_,
    "selu": aten.selu,
    "selu_": aten.selu_,
    "celu": aten.celu,
    "celu_": aten.celu_,
    "mish": aten.mish,
    "mish_": aten.mish_,
    "softplus": aten.softplus,
    "hardtanh": aten.hardtanh,
    "hardtanh_": aten.hardtanh_,
    "hardshrink": aten.hardshrink,
    "softshrink": aten.softshrink,
    "log_sigmoid": aten.log_sigmoid,
    "rrelu": aten.rrelu,
    "threshold": lambda h: aten.threshold(h, 0.1, -1.0),
    "threshold_": lambda h: aten.threshold_(h, 0.1, -1.0),
    "abs": aten.abs,
    "abs_": aten.abs_,
    "neg": aten.neg,
    "neg_": aten.neg_,
    "exp": aten.exp,
    "exp_": aten.exp_,
    "exp2": aten.exp2,
    "expm1": aten.expm1,
    "expm1_": aten.expm1_,
    "log1p": lambda h: aten.log1p(h.abs()),
    "log1p_": lambda h: aten.log1p_(h.abs()),
    "sqrt": lambda h: aten.sqrt(h.abs()),
    "sqrt_": lambda h: aten.sqrt_(h.abs()),
    "sin": aten.sin,
    "sin_": aten.sin_,
    "cos": aten.cos,
    "cos_": aten.cos_,
    "tan": aten.tan,
    "tan_": aten.tan_,
    "asin": lambda h: aten.asin(h.tanh()),
    "acos": lambda h: aten.acos(h.tanh()),
    "atan": aten.atan,
    "sinh": aten.sinh,
    "cosh": aten.cosh,
    "sinc": aten.sinc,
    "erf": aten.erf,
    "erf_": aten.erf_,
    "erfc": aten.erfc,
    "erfc_": aten.erfc_,
    "erfinv": lambda h: aten.erfinv(h.tanh() * 0.9),
    "i0": aten.i0,
    "sign": aten.sign,
    "sgn": aten.sgn,
    "signbit": lambda h: aten.signbit(h).float(),
    "floor": aten.floor,
    "floor_": aten.floor_,
    "ceil": aten.ceil,
    "ceil_": aten.ceil_,
    "round": aten.round,
    "round_": aten.round_,
    "trunc": aten.trunc,
    "trunc_": aten.trunc_,
    "frac": aten.frac,
    "square": aten.square,
    "deg2rad": aten.deg2rad,
    "rad2deg": aten.rad2deg,
    "nan_to_num": aten.nan_to_num,
    "nan_to_num_": aten.nan_to_num_,
    "isnan": lambda h: aten.isnan(h).float(),
    "isinf": lambda h: aten.isinf(h).float(),
    "isfinite": lambda h: aten.isfinite(h).float(),
    "logical_not": lambda h: aten.logical_not(h > 0).float(),
    "bitwise_not": lambda h: aten.bitwise_not(h > 0).float(),
    "positive": aten.positive,
    "dropout": lambda h: aten.dropout(h, 0.5, False),
    "dropout_": lambda h: aten.dropout_(h, 0.5, False),
    "feature_dropout": lambda h: aten.feature_dropout(h, 0.5, False),
    "alpha_dropout": lambda h: aten.alpha_dropout(h, 0.5, False),
    "feature_alpha_dropout": lambda h: aten.feature_alpha_dropout(h, 0.5, False),
    "native_dropout": lambda h: aten.native_dropout(h, 0.5, False)[0],
    "clone": aten.clone,
    "contiguous": lambda h: h.transpose(2, 3).contiguous().transpose(2, 3),
    "detach": aten.detach,
    "detach_": lambda h: aten.detach_(h * 1),
    "alias": aten.alias,
    "to": lambda h: aten.to(h, torch.float64).float(),
    "_to_copy": lambda h: aten._to_copy(aten._to_copy(h, dtype=torch.float64), dtype=torch.float32),
    "lift_fresh_copy": aten.lift_fresh_copy,
    "zeros_like": lambda h: h + aten.zeros_like(h),
    "ones_like": lambda h: h * aten.ones_like(h),
    "full_like": lambda h: h + aten.full_like(h, 2.0),
    "fill": lambda h: h + aten.fill(h, 1.5),
    "fill_": lambda h: h.clone().fill_(1.5) * h,
    "zero_": lambda h: h.clone().zero_() + h,
    "clamp": lambda h: aten.clamp(h, -0.3, 0.3),
    "clamp_": lambda h: aten.clamp_(h, -0.3, 0.3),
    "clip": lambda h: aten.clip(h, -0.3, 0.3),
    "clip_": lambda h: aten.clip_(h, -0.3, 0.3),
    "clamp_min": lambda h: aten.clamp_min(h, 0.1),
    "clamp_min_": lambda h: aten.clamp_min_(h, 0.1),
    "clamp_max": lambda h: aten.clamp_max(h, 0.1),
    "clamp_max_": lambda h: aten.clamp_max_(h, 0.1),
    "_autocast_to_reduced_precision": lambda h: aten._autocast_to_reduced_precision(
        h, False, False, torch.float16, torch.bfloat16
    ),
    "_autocast_to_full_precision": lambda h: aten._autocast_to_full_precision(h, False, False),
    # infinite at zero: the removed channels are checked against the removal reference
    "log": lambda h: aten.log(_away(h).abs()),
    "log_": lambda h: aten.log_(_away(h).abs()),
    "log2": lambda h: aten.log2(_away(h).abs()),
    "log10": lambda h: aten.log10(_away(h).abs()),
    "rsqrt": lambda h: aten.rsqrt(_away(h).abs()),
    "rsqrt_": lambda h: aten.rsqrt_(_away(h).abs()),
    "reciprocal": lambda h: aten.reciprocal(_away(h)),
    "reciprocal_": lambda h: aten.reciprocal_(_away(h)),
    "logit": lambda h: aten.logit(_away(h).abs() / 4),
    "logit_": lambda h: aten.logit_(_away(h).abs() / 4),
    "lgamma": lambda h: aten.lgamma(_away(h).abs()),
    "digamma": lambda h: aten.digamma(_away(h).abs()),
    "pow": lambda h: aten.pow(h, 2),
    "pow_": lambda h: aten.pow_(h, 3),
    "float_power": lambda h: aten.float_power(h, 2).float(),
    "float_power_": lambda h: aten.float_power_(_away(h).double(), -1).float(),
}

# registered elementwise keys no unary case can exercise, and why
NOT_TESTABLE = {
    "lift_fresh": "export turns it into lift_fresh_copy",
    "empty_like": "uninitialised values: the output differs between any two runs",
    "rand_like": "random values: the output differs between any two runs",
    "randn_like": "random values: the output differs between any two runs",
    "bernoulli": "random values: the output differs between any two runs",
    "dequantize": "needs a quantized tensor, which no float producer makes",
}

# infinite at zero (the spec: the table must mark exactly these as not zero-invariant)
SINGULAR = {
    "log",
    "log_",
    "log2",
    "log10",
    "rsqrt",
    "rsqrt_",
    "reciprocal",
    "reciprocal_",
    "logit",
    "logit_",
    "lgamma",
    "digamma",
    "float_power_",
}

UNARY_CASES = [
    Case(
        f"unary_{name}",
        (lambda fn=fn: conv_sandwich(Fn(lambda m, h, fn=fn: fn(h)))),
        image(),
        (("a.weight", 0), ("a.bias", 0), ("b.weight", 1)),
        (f"aten::{name}",),
        zero_invariant=name not in SINGULAR,
    )
    for name, fn in UNARY.items()
]


def _fork(fn: Callable[..., torch.Tensor], *extra: nn.Module) -> nn.Module:
    """Two (or more) conv branches of one input meet in fn, then a conv reads the result."""
    return Fork(fn, nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(3, 8, 1), *extra, b=nn.Conv2d(8, 5, 1))


def _inplace_bool(a: torch.Tensor, b: torch.Tensor, method: str) -> torch.Tensor:
    m = a > 0
    getattr(m, method)(b > 0)
    return m.float()


# op key -> f(h1, h2, ...) over conv branches; both branches' filters must be coupled
NARY: dict[str, Callable[..., torch.Tensor]] = {
    "add": torch.add,
    "add_": lambda a, b: a.add_(b),
    "sub": torch.sub,
    "sub_": lambda a, b: a.sub_(b),
    "rsub": aten.rsub,
    "mul": torch.mul,
    "mul_": lambda a, b: a.mul_(b),
    "maximum": torch.maximum,
    "minimum": torch.minimum,
    "fmax": torch.fmax,
    "fmin": torch.fmin,
    "atan2": torch.atan2,
    "atan2_": lambda a, b: a.atan2_(b),
    "where": lambda a, b: torch.where(a > b, a, b),
    "masked_fill": lambda a, b: a.masked_fill(b > 0, 0.5),
    "masked_fill_": lambda a, b: a.masked_fill_(b > 0, 0.5),
    "eq": lambda a, b: (a.round() == b.round()).float(),
    "ne": lambda a, b: (a.round() != b.round()).float(),
    "lt": lambda a, b: (a < b).float() + a,
    "le": lambda a, b: (a <= b).float() + a,
    "gt": lambda a, b: (a > b).float() + a,
    "ge": lambda a, b: (a >= b).float() + a,
    "logical_and": lambda a, b: torch.logical_and(a > 0, b > 0).float(),
    "logical_or": lambda a, b: torch.logical_or(a > 0, b > 0).float(),
    "logical_xor": lambda a, b: torch.logical_xor(a > 0, b > 0).float(),
    "bitwise_and": lambda a, b: torch.bitwise_and(a > 0, b > 0).float(),
    "bitwise_or": lambda a, b: torch.bitwise_or(a > 0, b > 0).float(),
    "bitwise_xor": lambda a, b: torch.bitwise_xor(a > 0, b > 0).float(),
    "__and__": lambda a, b: ((a > 0) & (b > 0)).float(),
    "__or__": lambda a, b: ((a > 0) | (b > 0)).float(),
    "__xor__": lambda a, b: ((a > 0) ^ (b > 0)).float(),
    "__iand__": lambda a, b: _inplace_bool(a, b, "__iand__"),
    "__ior__": lambda a, b: _inplace_bool(a, b, "__ior__"),
    "__ixor__": lambda a, b: _inplace_bool(a, b, "__ixor__"),
    "addcmul": lambda a, b: torch.addcmul(a, a, b, value=0.5),
    "addcmul_": lambda a, b: a.addcmul_(a, b),
    "lerp": lambda a, b: torch.lerp(a, b, 0.3),
    "lerp_": lambda a, b: a.lerp_(b, 0.3),
    "copy_": lambda a, b: a.copy_(b) + a,
    "hypot": torch.hypot,
    "heaviside": torch.heaviside,
    "copysign": torch.copysign,
    "logaddexp": torch.logaddexp,
    "logaddexp2": torch.logaddexp2,
    # dividing: the divisor's channels are checked against the removal reference
    "div": lambda a, b: torch.div(a, _away(b)),
    "div_": lambda a, b: a.div_(_away(b)),
    "true_divide": lambda a, b: torch.true_divide(a, _away(b)),
    "true_divide_": lambda a, b: a.true_divide_(_away(b)),
    "floor_divide": lambda a, b: torch.floor_divide(a, b.abs() + 3),
    "floor_divide_": lambda a, b: a.floor_divide_(b.abs() + 3),
    "remainder": lambda a, b: torch.remainder(a, _away(b)),
    "remainder_": lambda a, b: a.remainder_(_away(b)),
    "fmod": lambda a, b: torch.fmod(a, _away(b)),
    "fmod_": lambda a, b: a.fmod_(_away(b)),
    "xlogy": lambda a, b: torch.xlogy(a, _away(b).abs()),
    "xlogy_": lambda a, b: a.xlogy_(_away(b).abs()),
    "addcdiv": lambda a, b: torch.addcdiv(a, a, _away(b)),
    "addcdiv_": lambda a, b: a.addcdiv_(a, _away(b)),
}
NARY_NOT_TESTABLE = {
    "copy": "export emits copy_ for Tensor.copy_; the functional copy only after functionalization"
}
DIVIDING = {
    "div",
    "div_",
    "true_divide",
    "true_divide_",
    "remainder",
    "remainder_",
    "fmod",
    "fmod_",
    "xlogy",
    "xlogy_",
    "addcdiv",
    "addcdiv_",
}

NARY_CASES = [
    Case(
        f"nary_{name}",
        (lambda fn=fn: _fork(fn)),
        image(),
        (("a1.weight", 0), ("a2.weight", 0), ("b.weight", 1)),
        (f"aten::{name}",),
        zero_invariant=None if name in ("floor_divide", "floor_divide_") else name not in DIVIDING,
    )
    for name, fn in NARY.items()
]

BROADCAST_CASES = [
    # a per-channel parameter broadcast over space (layer scale); a size-1 channel gate (spatial attention)
    Case(
        "mul_layer_scale",
        lambda: conv_sandwich(Fn(lambda m, h: h * m.gamma, gamma=torch.rand(8, 1, 1) + 0.5)),
        image(),
        (("a.weight", 0), ("op.gamma", 0), ("b.weight", 1)),
        ("aten::mul",),
    ),
    Case(
        "div_by_parameter",
        lambda: conv_sandwich(Fn(lambda m, h: h / m.t, t=torch.rand(8, 1, 1) + 0.5)),
        image(),
        (("a.weight", 0), ("op.t", 0), ("b.weight", 1)),
        ("aten::div",),
        zero_invariant=False,
    ),
    Case(
        "add_bias_vector",
        lambda: conv_sandwich(Fn(lambda m, h: h + m.beta.view(1, -1, 1, 1), beta=torch.randn(8))),
        image(),
        (("a.weight", 0), ("op.beta", 0), ("b.weight", 1)),
        ("aten::add",),
    ),
    Case(
        "mul_spatial_gate",
        lambda: _fork(lambda a, b, g: a * torch.sigmoid(g), nn.Conv2d(3, 1, 1)),
        image(),
        (("a1.weight", 0), ("b.weight", 1)),
        ("aten::mul",),
    ),
    Case(
        "where_scalar_branch",
        lambda: conv_sandwich(Fn(lambda m, h: torch.where(h > 0, h, 0.1 * h))),
        image(),
        (("a.weight", 0), ("b.weight", 1)),
        ("aten::where",),
    ),
    Case(
        "expand_as_normalize",
        lambda: conv_sandwich(
            Fn(lambda m, h: h / h.norm(dim=(2, 3), keepdim=True).clamp_min(1e-6).expand_as(h))
        ),
        image(),
        (("a.weight", 0), ("b.weight", 1)),
        ("aten::expand_as", "aten::div"),
        zero_invariant=False,
    ),
]

EXPORT_CASES = [
    # torch.export wraps casts in _assert_tensor_metadata checks (read-only: the channels still flow)
    Case(
        "cast_traced_by_export",
        lambda: conv_sandwich(Fn(lambda m, h: h.double().float())),
        image(),
        (("a.weight", 0), ("b.weight", 1)),
        ("aten::_assert_tensor_metadata", "aten::to"),
        tracer="export",
    ),
]

CASES = UNARY_CASES + NARY_CASES + BROADCAST_CASES + EXPORT_CASES
test_random_removal_keeps_contract, test_prune_half_keeps_contract = make_tests(CASES, examples=2, prune_half=one_per_rule(CASES))


@pytest.mark.parametrize(
    "family,table,excluded",
    [
        (same_shape_rule, UNARY, NOT_TESTABLE),
        (singular_rule, UNARY, NOT_TESTABLE),
        (broadcasting_rule, NARY, NARY_NOT_TESTABLE),
    ],
    ids=["elementwise", "singular", "broadcasting"],
)
def test_every_family_member_has_a_case(family, table, excluded):
    """Each ATen key registered in a family has a soundness case, or a reason why none can exist."""
    keys = {e.key.split("::")[1] for e in RULES if e.rule is family and e.key.startswith("aten::")}
    assert keys, "family has no members"
    missing = sorted(keys - set(table) - set(excluded))
    assert not missing, f"no soundness case for {missing}"
