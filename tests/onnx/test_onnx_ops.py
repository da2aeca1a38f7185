"""Single-op ONNX models (op under test between two prunable layers): every rule prunes and verifies."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import prunec
from tests.onnx.helpers import expected_params, make_model, params, rand, relative_diff, run, zeroed

N, H = 2, 6


def conv(name: str, x: str, cin: int, cout: int, k: int = 1, group: int = 1, bias: bool = True
         ) -> tuple[list, dict]:
    """A Conv node reading `x` and its initializers."""
    inits = {f"{name}.w": rand(cout, cin // group, k, k)}
    ins = [x, f"{name}.w"]
    if bias:
        inits[f"{name}.b"] = rand(cout, seed=1)
        ins.append(f"{name}.b")
    pad = k // 2
    return [helper.make_node("Conv", ins, [name], group=group, pads=[pad] * 4, name=name)], inits


def sandwich(middle: list, mid_in: str, mid_out: str, c1: int, c2: int, extra: dict | None = None,
             opset: int = 18) -> object:
    """X -> conv1 (c1 channels) -> middle -> conv2 (from c2 channels) -> y."""
    n1, i1 = conv("conv1", "x", 3, c1, 3)
    n2, i2 = conv("conv2", mid_out, c2, 5)
    relu = helper.make_node("Relu", ["conv1"], [mid_in])
    return make_model([*n1, relu, *middle, *n2], {"x": (N, 3, H, H)}, ["conv2"], {**i1, **i2, **(extra or {})},
                      opset)


def _const(name: str, values: list[int] | np.ndarray, dtype: type = np.int64) -> object:
    from onnx import numpy_helper

    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(values, dtype=dtype)))


def case_split_concat():
    """Split with explicit sizes, separate branches, Concat."""
    mid = [_const("sizes", [4, 8]), helper.make_node("Split", ["a", "sizes"], ["s0", "s1"], axis=1),
           helper.make_node("Relu", ["s0"], ["r0"]), helper.make_node("Sigmoid", ["s1"], ["r1"]),
           helper.make_node("Concat", ["r1", "r0"], ["b"], axis=1)]
    return sandwich(mid, "a", "b", 12, 12)


def case_split_equal():
    """Split by num_outputs (opset 18) into branches pruned unevenly: sizes become an input."""
    n3, i3 = conv("conv3", "s1", 4, 6)
    mid = [helper.make_node("Split", ["a"], ["s0", "s1"], axis=1, num_outputs=2), *n3,
           helper.make_node("Concat", ["s0", "conv3"], ["b"], axis=1)]
    return sandwich(mid, "a", "b", 8, 10, i3)


def case_slice():
    """A static channel Slice: only the read channels couple downstream."""
    mid = [_const("st", [2]), _const("en", [10]), _const("ax", [1]),
           helper.make_node("Slice", ["a", "st", "en", "ax"], ["b"])]
    return sandwich(mid, "a", "b", 12, 8)


def case_slice_negative():
    """A Slice with negative bounds ('all but the first and last two')."""
    mid = [_const("st", [1]), _const("en", [-2]), _const("ax", [1]),
           helper.make_node("Slice", ["a", "st", "en", "ax"], ["b"])]
    return sandwich(mid, "a", "b", 12, 9)


def case_pad_spatial():
    """Constant padding of the spatial axes passes channels."""
    mid = [_const("pads", [0, 0, 1, 1, 0, 0, 1, 1]), helper.make_node("Pad", ["a", "pads"], ["b"])]
    return sandwich(mid, "a", "b", 8, 8)


def case_pad_channels():
    """Constant padding of the channel axis: the padding channels stay."""
    mid = [_const("pads", [0, 2, 0, 0, 0, 1, 0, 0]), helper.make_node("Pad", ["a", "pads"], ["b"])]
    return sandwich(mid, "a", "b", 8, 11)


def case_resize():
    """Nearest upsampling by 2 acts per channel."""
    mid = [_const("scales", [1, 1, 2, 2], np.float32), helper.make_node("Resize", ["a", "", "scales"], ["b"],
                                                                          mode="nearest")]
    return sandwich(mid, "a", "b", 8, 8)


def case_group_norm():
    """GroupNormalization (opset 21): whole groups of channels go together; num_groups shrinks."""
    mid = [helper.make_node("GroupNormalization", ["a", "gs", "gb"], ["b"], num_groups=4)]
    return sandwich(mid, "a", "b", 16, 16, {"gs": rand(16, seed=3) + 2, "gb": rand(16, seed=4)}, opset=21)


def case_instance_norm():
    """InstanceNormalization: per-channel statistics over space."""
    mid = [helper.make_node("InstanceNormalization", ["a", "is", "ib"], ["b"])]
    return sandwich(mid, "a", "b", 8, 8, {"is": rand(8, seed=3), "ib": rand(8, seed=4)})


def case_batch_norm():
    """BatchNormalization: scale, bias and running stats follow their channel."""
    mid = [helper.make_node("BatchNormalization", ["a", "s", "bb", "m", "v"], ["b"])]
    extra = {"s": rand(8, seed=3), "bb": rand(8, seed=4), "m": rand(8, seed=5), "v": np.abs(rand(8, seed=6)) + 1}
    return sandwich(mid, "a", "b", 8, 8, extra)


def case_depth_to_space_crd():
    """DepthToSpace CRD: output channel c gathers input channels [4c, 4c+4)."""
    mid = [helper.make_node("DepthToSpace", ["a"], ["b"], blocksize=2, mode="CRD")]
    return sandwich(mid, "a", "b", 16, 4)


def case_depth_to_space_dcr():
    """DepthToSpace DCR: output channel c gathers input channels c + 4k."""
    mid = [helper.make_node("DepthToSpace", ["a"], ["b"], blocksize=2, mode="DCR")]
    return sandwich(mid, "a", "b", 16, 4)


def case_tile():
    """Tile along channels: y[c + k*C] = x[c]."""
    mid = [_const("rep", [1, 2, 1, 1]), helper.make_node("Tile", ["a", "rep"], ["b"])]
    return sandwich(mid, "a", "b", 4, 8)


def case_gather_channels():
    """Gather constant channels: they stay and are renumbered."""
    mid = [_const("idx", [1, 3, 6]), helper.make_node("Gather", ["a", "idx"], ["b"], axis=1)]
    return sandwich(mid, "a", "b", 8, 3)


def case_grouped_conv():
    """A grouped conv (4 groups of 2 in, 4 out)."""
    n3, i3 = conv("conv3", "a", 8, 16, 3, group=4)
    return sandwich([*n3, helper.make_node("Relu", ["conv3"], ["b"])], "a", "b", 8, 16, i3)


def case_depthwise_conv():
    """A depthwise conv couples its input and output channel by channel."""
    n3, i3 = conv("conv3", "a", 8, 8, 3, group=8)
    return sandwich([*n3, helper.make_node("Relu", ["conv3"], ["b"])], "a", "b", 8, 8, i3)


def case_conv_transpose_grouped():
    """ConvTranspose with 2 groups (weight (in, out/g, k, k))."""
    mid = [helper.make_node("ConvTranspose", ["a", "tw", "tb"], ["b"], group=2, strides=[2, 2], kernel_shape=[2, 2])]
    return sandwich(mid, "a", "b", 8, 12, {"tw": rand(8, 6, 2, 2, seed=5), "tb": rand(12, seed=6)})


def case_expand_add():
    """Squeeze-style gate: ReduceMean, Expand back to full size, Add."""
    mid = [_const("axes", [2, 3]), helper.make_node("ReduceMean", ["a", "axes"], ["m"], keepdims=1),
           _const("shape", [N, 8, H, H]), helper.make_node("Expand", ["m", "shape"], ["e"]),
           helper.make_node("Add", ["a", "e"], ["b"])]
    return sandwich(mid, "a", "b", 8, 8)


def case_prelu_where_max():
    """PRelu with per-channel slopes, Where with a constant mask, variadic Max."""
    mask = np.zeros((1, 1, H, H), dtype=bool)
    mask[..., ::2] = True
    from onnx import numpy_helper

    mid = [helper.make_node("PRelu", ["a", "slope"], ["p"]),
           helper.make_node("Constant", [], ["mask"], value=numpy_helper.from_array(mask)),
           helper.make_node("Where", ["mask", "p", "a"], ["w"]),
           helper.make_node("Max", ["w", "p", "a"], ["b"])]
    return sandwich(mid, "a", "b", 8, 8, {"slope": rand(8, 1, 1, seed=7)})


def case_softmax_spatial_pools():
    """Softmax over the last axis, max/average pooling and CumSum along space pass channels."""
    mid = [helper.make_node("Softmax", ["a"], ["s"], axis=-1),
           helper.make_node("MaxPool", ["s"], ["p"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
           helper.make_node("AveragePool", ["p"], ["q"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
           _const("ax", 2), helper.make_node("CumSum", ["q", "ax"], ["b"])]
    return sandwich(mid, "a", "b", 8, 8)


def case_einsum():
    """Einsum with a weight: 'nchw,dc->ndhw' is a 1x1 conv."""
    mid = [helper.make_node("Einsum", ["a", "ew"], ["b"], equation="nchw,dc->ndhw")]
    return sandwich(mid, "a", "b", 8, 6, {"ew": rand(6, 8, seed=8)})


def case_gemm_mlp():
    """An MLP of Gemm (transB) layers after global pooling, flatten and squeeze."""
    nodes = [*conv("conv1", "x", 3, 8, 3)[0], helper.make_node("GlobalAveragePool", ["conv1"], ["g"]),
             _const("axes", [2, 3]), helper.make_node("Squeeze", ["g", "axes"], ["s"]),
             helper.make_node("Gemm", ["s", "w1", "b1"], ["h"], transB=1), helper.make_node("Tanh", ["h"], ["t"]),
             helper.make_node("Gemm", ["t", "w2"], ["y"], alpha=0.5)]
    inits = {**conv("conv1", "x", 3, 8, 3)[1], "w1": rand(16, 8), "b1": rand(16, seed=2), "w2": rand(16, 4)}
    return make_model(nodes, {"x": (N, 3, H, H)}, ["y"], inits)


def case_matmul_mlp():
    """A token MLP: MatMul, bias Add, Erf-GELU, MatMul; the feature axis is last."""
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Add", ["h", "b1"], ["hb"]),
             _const("sq2", np.sqrt(2.0), np.float32), helper.make_node("Div", ["hb", "sq2"], ["d"]),
             helper.make_node("Erf", ["d"], ["e"]), helper.make_node("Mul", ["hb", "e"], ["g"]),
             helper.make_node("MatMul", ["g", "w2"], ["y"])]
    return make_model(nodes, {"x": (N, 5, 8)}, ["y"], {"w1": rand(8, 32), "b1": rand(32, seed=1), "w2": rand(32, 8)})


CASES = {name[5:]: fn for name, fn in sorted(globals().items()) if name.startswith("case_")}


@pytest.mark.parametrize("case", sorted(CASES))
def test_single_op_model_prunes_and_keeps_contract(case):
    """Halving every group verifies in onnxruntime, matches the zeroed original and counts params exactly."""
    model = CASES[case]()
    result = prunec.prune(model, ratio=0.5)
    assert result.verification is not None and result.verification.passed
    assert result.report.channels_removed > 0, result.report
    assert params(result.model) == expected_params(model, result.removed) < params(model)
    if all(g.zero_invariant for g in result.removed):
        rng = np.random.default_rng(3)
        shape = tuple(d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim)
        feeds = {model.graph.input[0].name: rng.standard_normal(shape).astype(np.float32)}
        assert relative_diff(run(result.model, feeds), run(zeroed(model, result.removed), feeds)) <= 1e-4
