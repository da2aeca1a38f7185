"""Every fuzz failure found so far, replayed: each spec once broke prunec and must stay fixed."""

import json

import numpy as np
import pytest
import torch
from torch import nn

import prunec
from tests.fuzz.check import PINNED, PRUNED, REFUSED, run_case

# name -> (spec as printed by bench/fuzz.py, expected status, what was wrong)
REGRESSIONS = {
    "weight_norm_conv_param_output": (
        '{"batch":1,"blocks":[{"op":"weight_norm_conv","out":4}],"dtype":"float32","head":{"kind":"param_out",'
        '"out":2},"input":{"channels":1,"kind":"image","size":8},"prune":{"criterion":"l1","ignore_pick":null,'
        '"output":"auto","ratio":0.7,"round_to":4},"save":false,"seed":6509}',
        PRUNED, "v / ||v_row||: a zeroed row gives 0/0 = NaN in the zeroed reference (div rule)"),
    "weight_norm_conv_in_chunk": (
        '{"batch":2,"blocks":[{"at":1,"how":"chunk","merge":"first","op":"split","parts":[[{"op":'
        '"weight_norm_conv","out":8}],[{"norm":"rms_cl","op":"norm_only"},{"act":"prelu","bias":true,'
        '"gn_groups":5,"groups":1,"k":1,"norm":"gn","op":"conv","out":10,"stride":1,"transposed":false}]]}],'
        '"dtype":"float32","head":{"kind":"pool_linear","out":2},"input":{"channels":2,"kind":"image","size":8},'
        '"prune":{"criterion":"l2","ignore_pick":null,"output":"auto","ratio":0.9,"round_to":4},"save":false,'
        '"seed":3183}',
        PRUNED, "the same division by a zeroed weight-norm row, inside a chunk branch"),
    "traced_program_fails_on_its_inputs": (
        '{"batch":2,"blocks":[{"act":"hardswish","bias":true,"groups":2,"k":3,"norm":"rms_cl","op":"conv",'
        '"out":4,"stride":1,"transposed":false},{"body":[{"groups":2,"how":"view","op":"shuffle"},{"act":"prelu",'
        '"bias":false,"groups":1,"k":1,"norm":"ln_cl","op":"conv","out":4,"stride":1,"transposed":true}],'
        '"op":"residual","proj":null},{"op":"dropout","p":0.5},{"body":[{"act":"relu","bias":true,"gn_groups":2,'
        '"groups":1,"k":1,"norm":"gn","op":"conv","out":4,"stride":1,"transposed":true}],"op":"residual",'
        '"proj":null},{"op":"spatial_attn"}],"dtype":"float32","head":{"kind":"pool2_view_linear","out":3},'
        '"input":{"aux":true,"channels":2,"kind":"image","nhwc":true,"size":8},"prune":{"criterion":"l2",'
        '"ignore_pick":null,"output":"auto","ratio":0.9,"round_to":4},"save":false,"seed":7155}',
        {"export": REFUSED, "auto": PINNED},
        "torch.export dropped a .contiguous() (fake strides differ from eager ones): the traced program's "
        ".view() raised inside verification (PassError); now a TraceError up front. The recording (the "
        "default tracer) runs the eager code: every channel is tied to the input, pinned with reasons"),
    "float16_rounding": (
        '{"batch":2,"blocks":[{"op":"dropout","p":0.5},{"op":"upsample"},{"op":"raw_conv","out":9},{"act":'
        '"hardswish","bias":false,"groups":1,"k":3,"norm":"gn1","op":"conv","out":14,"stride":1,"transposed":'
        'true},{"act":"tanh","bias":false,"groups":2,"k":3,"norm":"ln_cl","op":"conv","out":16,"stride":1,'
        '"transposed":false}],"dtype":"float16","head":{"kind":"map","out":5},"input":{"aux":false,"channels":3,'
        '"kind":"image","nhwc":true,"size":4},"prune":{"criterion":"l2","ignore_pick":null,"output":"auto",'
        '"ratio":0.9,"round_to":null},"save":false,"seed":7138}',
        PRUNED, "a correct float16 model failed verification at 2.4e-4 > 1e-4: half-precision rounding; the "
                "default tolerance now follows the output dtype"),
}


# the same, replayed on the ONNX path (the spec's model exported with torch.onnx)
ONNX_REGRESSIONS = {
    "onnx_division_by_zeroed_weight_norm": (  # bench/fuzz.py --seed 0 --start 132 --onnx-only
        '{"batch":1,"blocks":[{"body":[{"op":"weight_norm_conv","out":16},{"act":null,"bias":true,"groups":2,'
        '"k":1,"norm":null,"op":"conv","out":4,"stride":1,"transposed":false}],"op":"residual","proj":null},{'
        '"body":[{"act":"gelu","bias":true,"groups":2,"k":3,"norm":"ln_cl","op":"conv","out":4,"stride":1,"tr'
        'ansposed":false}],"op":"residual","proj":null},{"body":[{"act":"tanh","bias":false,"groups":1,"k":3,'
        '"norm":"in","op":"conv","out":4,"stride":1,"transposed":false}],"op":"residual","proj":null},{"op":"'
        'gate_mul","out":15}],"dtype":"float32","head":{"kind":"map","out":4},"input":{"aux":false,"channels"'
        ':4,"kind":"image","nhwc":false,"size":6},"prune":{"criterion":"l2","ignore_pick":null,"output":"auto'
        '","round_to":null,"target":"macs=0.5"},"save":false,"seed":6680}',
        PRUNED, "onnx::Div (weight norm v / ||v||) was zero-invariant in the ONNX rules: 0/0 = NaN in the "
                "zeroed reference; Div/Mod divisors, Log, Reciprocal and Pow now reduce like the ATen rules"),
    "intentional_minus_inf_constant": (
        '{"batch":2,"blocks":[{"bias":true,"causal":true,"head_dim":6,"heads":4,"how":"manual","kv_heads":2,'
        '"norm":null,"op":"attn"},{"bias":false,"causal":true,"head_dim":5,"heads":3,"how":"repeat","kv_heads":1,'
        '"norm":"rms","op":"attn"},{"op":"pos_embed"},{"op":"gru","out":7},{"op":"cast"}],"dtype":"float32",'
        '"head":{"kind":"lm","out":4,"tied":false},"input":{"dim":2,"kind":"tokens","tokens":3,"vocab":17},'
        '"prune":{"criterion":"l2","ignore_pick":null,"output":"auto","ratio":0.3,"round_to":4},"save":true,'
        '"seed":5542}',
        PRUNED, "the NaN/Inf check refused a -inf causal-mask constant; it now checks prunable initializers only"),
    "onnx_resize_scales_before_layer_norm": (  # bench/fuzz.py --seed 0 --start 981 --onnx-only
        '{"batch":2,"blocks":[{"norm":"rms_cl","op":"norm_only"},{"op":"upsample"},{"dim":2,"op":"to_tokens"},'
        '{"kind":"ln","op":"norm"}],"dtype":"float32","head":{"kind":"last_linear","out":6},"input":{"aux":false,'
        '"channels":3,"kind":"image","nhwc":false,"size":4},"prune":{"criterion":"l1","ignore_pick":23,"output":'
        '"auto","ratio":0.7,"round_to":4},"save":false,"seed":2254}',
        PRUNED, "the float Resize `scales` initializer was freed by the Resize rule, so it formed a group "
                "of its own and was zeroed in the reference (scale 0: onnxruntime refused it, or a later "
                "Reshape saw 0 elements); the rule now pins roi/scales/sizes"),
    "onnx_resize_scales_zero_invariant": (  # bench/fuzz.py --seed 1 --start 142 --onnx-only
        '{"batch":1,"blocks":[{"op":"upsample"},{"act":"relu","bias":false,"groups":1,"k":1,"norm":"in_affine",'
        '"op":"conv","out":5,"stride":2,"transposed":false},{"act":null,"bias":true,"groups":1,"k":3,"norm":'
        '"rms_cl","op":"conv","out":4,"stride":1,"transposed":true}],"dtype":"float32","head":{"kind":"map",'
        '"out":4},"input":{"aux":false,"channels":3,"kind":"image","nhwc":false,"size":4},"prune":{"criterion":'
        '"l1","ignore_pick":null,"output":"graph_module","ratio":0.7,"round_to":4},"save":true,"seed":1116}',
        PRUNED, "the same scales group, all groups zero-invariant: the error blamed the original model"),
    "onnx_split_to_sequence": (  # bench/fuzz.py --seed 1 --start 602 --onnx-only
        '{"batch":1,"blocks":[{"op":"chunk3"},{"dim":13,"op":"to_tokens"},{"groups":1,"k":1,"op":"conv1d",'
        '"out":5}],"dtype":"float32","head":{"kind":"mean_linear","out":5},"input":{"aux":false,"channels":4,'
        '"kind":"image","nhwc":false,"size":8},"prune":{"criterion":"l2","ignore_pick":null,"output":"auto",'
        '"ratio":0.9,"round_to":4},"save":true,"seed":8399}',
        PRUNED, "torch.chunk(3) exports as SplitToSequence: the shape probe got a list back (ValueError); "
                "sequences are now rank-0 values, and the ops around them are declined"),
}


@pytest.mark.parametrize("name", sorted(ONNX_REGRESSIONS))
def test_onnx_fuzz_regression(name):
    """The exported spec that once failed on the ONNX path now prunes with the contract intact."""
    from tests.fuzz.check_onnx import run_onnx_case

    text, expected, _why = ONNX_REGRESSIONS[name]
    outcome = run_onnx_case(json.loads(text))
    assert outcome.status == expected, str(outcome)


@pytest.mark.parametrize("tracer", ["auto", "export"])
@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_fuzz_regression(name, tracer):
    """The spec that once failed now prunes (or pins) with the contract intact, save/load included,
    traced by the recording (the default) and by torch.export."""
    text, expected, _why = REGRESSIONS[name]
    spec = json.loads(text)
    spec["prune"]["tracer"] = tracer
    outcome = run_case(spec, round_trip=True)
    want = expected[tracer] if isinstance(expected, dict) else expected
    assert outcome.status == want, str(outcome)


class _DivByParam(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)
        self.scale = nn.Parameter(torch.rand(1, 8, 1, 1) + 0.5)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.head(self.conv(x) / self.scale)


def test_division_by_pruned_channels_is_not_zero_invariant():
    """X / scale[c]: removed channels of the divisor are verified against the removal reference."""
    model = _DivByParam().eval()
    x = torch.randn(2, 3, 4, 4)
    result = prunec.prune(model, x, ratio=0.5)
    (group,) = result.removed
    assert not group.zero_invariant
    assert any("divides by this axis" in n for n in group.notes)
    assert result.model.conv.out_channels == 4 and result.model.scale.shape == (1, 4, 1, 1)
    keep = [c for c in range(8) if c not in group.channels]
    with torch.no_grad():  # removal: channel c simply absent from the sum of the head
        h = model.conv(x)[:, keep] / model.scale[:, keep]
        want = nn.functional.conv2d(h, model.head.weight[:, keep], model.head.bias)
        assert torch.allclose(result.model(x), want, atol=1e-5)


def test_default_tolerance_follows_the_output_dtype():
    """1e-4 for float32/64 outputs; the rounding level for float16 (5e-3) and bfloat16 (2e-2)."""
    from prunec.verify import default_tolerance

    assert default_tolerance(torch.zeros(2)) == 1e-4
    assert default_tolerance((torch.zeros(2, dtype=torch.float16), torch.zeros(1))) == 5e-3
    assert default_tolerance({"a": torch.zeros(2, dtype=torch.bfloat16), "b": torch.zeros(2, dtype=torch.long)}) == 2e-2
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).half()
    result = prunec.prune(model, torch.randn(3, 4, dtype=torch.float16), ratio=0.5)
    assert result.verification.tolerance == 5e-3 and result.verification.passed
    assert prunec.prune(model, torch.randn(3, 4, dtype=torch.float16), ratio=0.5,
                        tolerance=1e-3).verification.tolerance == 1e-3


def _resize_model():
    from onnx import helper

    from tests.onnx.helpers import make_model, rand

    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["h"], kernel_shape=[1, 1]),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Resize", ["r", "", "scales"], ["u"], mode="nearest"),
             helper.make_node("Conv", ["u", "w2", "b2"], ["y"], kernel_shape=[1, 1])]
    inits = {"w1": rand(8, 3, 1, 1), "b1": rand(8), "w2": rand(2, 8, 1, 1), "b2": rand(2),
             "scales": np.asarray([1.0, 1.0, 2.0, 2.0], dtype=np.float32)}
    return make_model(nodes, {"x": (1, 3, 4, 4)}, ["y"], inits)


def test_onnx_resize_scales_are_not_a_group():
    """A float Resize `scales` initializer is pinned, never pruned or zeroed; the convs around it shrink."""
    import onnx.numpy_helper

    model = _resize_model()
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 4)).astype(np.float32)
    result = prunec.prune(model, {"x": x}, ratio=0.5)
    assert result.verification.passed
    assert all(s.param != "scales" for g in result.removed for s in g.members)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in result.model.graph.initializer}
    assert inits["scales"].tolist() == [1.0, 1.0, 2.0, 2.0]
    assert inits["w1"].shape == (4, 3, 1, 1) and inits["w2"].shape == (2, 4, 1, 1)


def test_onnx_unloadable_reference_does_not_blame_the_original(monkeypatch):
    """When only prunec's reference fails to load, the error says the original loads (prunec's fault)."""
    import prunec.onnx_verify as onnx_verify

    model = _resize_model()
    real = onnx_verify.build_reference

    def broken(analysis, keep, removed):
        ref, wrapped = real(analysis, keep, removed)
        ref.graph.node[0].input[1] = "missing_weight"
        return ref, wrapped

    monkeypatch.setattr(onnx_verify, "build_reference", broken)
    x = np.zeros((1, 3, 4, 4), dtype=np.float32)
    with pytest.raises(prunec.OnnxModelError, match="original model loads, so this is a prunec limitation"):
        prunec.prune(model, {"x": x}, ratio=0.5)
