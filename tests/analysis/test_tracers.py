"""The fast recording frontend agrees with torch.export, and falls back to it when it must."""

from __future__ import annotations

import pytest
import torch
from prunec.zoo import ZOO
from torch import nn

import prunec
from prunec.frontends.torch_export import trace
from prunec.frontends.torch_record import RecordedProgram
from prunec.inputs import ExampleInputs
from tests.helpers import Gate

X = torch.randn(2, 3, 8, 8)


def _groups(analysis: prunec.Analysis) -> list[tuple]:
    return [
        (*sorted((m.param, m.dim, m.indices) for m in g.members), g.channel_count, g.zero_invariant)
        for g in analysis.groups
    ]


# run-time checks torch.export inserts (before a dtype cast, say); eager code has nothing to record
_EXPORT_ASSERTS = {"aten::_assert_tensor_metadata", "aten::_assert_scalar", "aten::_assert_async"}


def _ops(analysis: prunec.Analysis) -> list[tuple]:
    return [(op.name, op.op, op.origin) for op in analysis.graph.ops() if op.op not in _EXPORT_ASSERTS]


@pytest.mark.parametrize("name", sorted(ZOO))
def test_recording_matches_export_on_every_zoo_model(name):
    """Same ops (export's run-time asserts aside) in the same order with the same names, same state
    values, same groups and pins."""
    entry = ZOO[name]
    model, inputs = entry.build().eval(), entry.example_inputs()
    rec = prunec.analyze(model, inputs, tracer="record")
    exp = prunec.analyze(model, inputs, tracer="export")
    assert isinstance(rec.source.exported, RecordedProgram)
    assert _ops(rec) == _ops(exp)
    # tied tensors may be listed at another position, so compare state and groups as sets
    assert sorted((v.param, v.aliases, v.shape) for v in rec.graph.state_values()) == sorted(
        (v.param, v.aliases, v.shape) for v in exp.graph.state_values()
    )
    assert sorted(_groups(rec)) == sorted(_groups(exp))
    assert sorted(map(str, rec.pinned_params)) == sorted(map(str, exp.pinned_params))


@pytest.mark.parametrize("name", sorted(ZOO))
def test_prune_gives_the_same_model_with_either_tracer(name):
    """prune() records by default; the pruned model is the one torch.export's trace gives: the same
    removed channels, classes, state (names, order, values) and outputs."""
    entry = ZOO[name]
    model, inputs = entry.build().eval(), entry.example_inputs()
    rec = prunec.prune(model, inputs, ratio=0.5)
    exp = prunec.prune(model, inputs, ratio=0.5, tracer="export")
    assert rec.analysis.source.tracer == "record" and exp.analysis.source.tracer == "export"
    # tied tensors may be listed at another position: members compare as sorted lists
    def removed(result: prunec.PruneResult) -> list[list[tuple]]:
        return [sorted((m.param, m.dim, m.indices) for m in g.members) for g in result.removed]

    assert removed(rec) == removed(exp) and rec.removed
    assert rec.output_kind == exp.output_kind == "module" and type(rec.model) is type(exp.model)
    a, b = rec.model.state_dict(), exp.model.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    x = ExampleInputs.from_user(inputs)
    with torch.no_grad():
        out_a, out_b = x.call(rec.model), x.call(exp.model)
    assert all(torch.equal(p, q) for p, q in zip(torch.utils._pytree.tree_leaves(out_a),
                                                 torch.utils._pytree.tree_leaves(out_b)))


def test_prune_refuses_an_unknown_tracer():
    """A misspelt tracer is an InputError before any work."""
    model = nn.Conv2d(3, 4, 1)
    with pytest.raises(prunec.InputError, match=r"tracer='fx'; use one of auto, record, export"):
        prunec.prune(model, X, ratio=0.5, tracer="fx")


class WithFunction(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 2, 1)

    def forward(self, x):
        return self.b(Gate.apply(self.a(x)))


def test_user_autograd_function_falls_back_to_export():
    """A user autograd.Function is not recorded; torch.export traces it as one op."""
    analysis = prunec.analyze(WithFunction().eval(), X)
    assert isinstance(analysis.source.exported, torch.export.ExportedProgram)
    assert any(op.op.startswith("autograd::") for op in analysis.graph.ops())
    with pytest.raises(
        prunec.TraceError,
        match=r"^recording WithFunction failed: NotRecordable: "
        r"autograd\.Function Gate\. Use tracer='export'\.$",
    ):
        prunec.analyze(WithFunction().eval(), X, tracer="record")


def test_autograd_function_apply_is_restored_after_recording():
    """The recorder's guard on Function.apply is removed again, on success and on failure."""
    original = torch.autograd.Function.__dict__["apply"]
    prunec.analyze(nn.Conv2d(3, 4, 1).eval(), X, tracer="record")
    with pytest.raises(prunec.TraceError):
        prunec.analyze(WithFunction().eval(), X, tracer="record")
    assert torch.autograd.Function.__dict__["apply"] is original


class DataDependent(nn.Module):
    def forward(self, x):
        return x if x.sum() > 0 else -x


def test_data_dependent_control_flow_is_refused_like_export():
    """A branch on tensor data is not silently specialised: the recorder refuses, export fails."""
    with pytest.raises(prunec.TraceError, match=r"torch\.export could not trace DataDependent"):
        prunec.analyze(DataDependent(), X)
    with pytest.raises(prunec.TraceError, match=r"turns tensor data into a Python value"):
        prunec.analyze(DataDependent(), X, tracer="record")


class NumpyBranch(nn.Module):
    def __init__(self, via: str) -> None:
        super().__init__()
        self.via = via
        self.a = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        h = self.a(x)
        s = h.sum().detach()
        positive = (s.numpy() if self.via == "numpy" else s.tolist()) > 0
        return h[:, :2] if positive else h[:, 2:]


@pytest.mark.parametrize("via", ["numpy", "tolist"])
def test_tensor_data_read_without_an_op_is_refused(via):
    """numpy()/tolist() read data without dispatching: the recorder refuses, auto falls back to export."""
    with pytest.raises(prunec.TraceError, match=rf"NotRecordable: Tensor\.{via}\(\) hands tensor data to Python"):
        prunec.analyze(NumpyBranch(via).eval(), X, tracer="record")
    with pytest.raises(prunec.TraceError, match=r"torch\.export could not trace NumpyBranch"):
        prunec.analyze(NumpyBranch(via).eval(), X)
    assert "numpy" not in torch.Tensor.__dict__ and "tolist" not in torch.Tensor.__dict__


class Noisy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        h = self.a(x)
        return h + torch.rand_like(h)


def test_outputs_that_a_replay_cannot_reproduce_fall_back_to_export():
    """A random op that reaches the output makes the replay differ: torch.export traces instead."""
    analysis = prunec.analyze(Noisy().eval(), X)
    assert isinstance(analysis.source.exported, torch.export.ExportedProgram)
    with pytest.raises(prunec.TraceError, match=r"does not reproduce the eager outputs"):
        prunec.analyze(Noisy().eval(), X, tracer="record")


def test_unknown_tracer_is_an_input_error():
    """A misspelt tracer name says which ones exist."""
    with pytest.raises(prunec.InputError, match=r"^tracer='fx'; use one of auto, record, export$"):
        prunec.analyze(nn.Conv2d(3, 4, 1), X, tracer="fx")


class Mixed(nn.Module):
    """Keyword, nested and non-tensor inputs; a dict output."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 1)

    def forward(self, x, pair, *, scale: float = 1.0, mask=None):
        y = self.a(x) * scale + self.b(pair[0]) - pair[1]
        return {"y": y if mask is None else y * mask, "k": 3}


def test_recorded_program_replays_keyword_nested_and_non_tensor_arguments():
    """module() takes the model's own arguments and returns its output structure, fresh each time."""
    model = Mixed().eval()
    args = (X, (torch.randn(2, 3, 8, 8), torch.randn(2, 4, 8, 8)))
    inputs = ExampleInputs(args, {"scale": 0.5, "mask": torch.rand(2, 1, 8, 8)})
    traced = trace(model, inputs, tracer="record")
    program = traced.exported
    gm1, gm2 = program.module(), program.module()
    assert gm1.graph is not gm2.graph and gm1.a.weight is model.a.weight
    with torch.no_grad():
        want, got = inputs.call(model), inputs.call(gm1)
    assert got["k"] == 3 and torch.equal(got["y"], want["y"])
    assert traced.graph.graph_inputs == ["x", "pair_0", "pair_1", "mask"]


def test_recording_on_the_meta_device():
    """Meta tensors record (no values to replay) and give the groups of the real model."""
    entry = ZOO["resnet_basic"]
    real = prunec.analyze(entry.build().eval(), entry.example_inputs(), tracer="record")
    meta_model = entry.build().to("meta").eval()
    meta = prunec.analyze(meta_model, entry.example_inputs().to("meta"), tracer="record")
    assert isinstance(meta.source.exported, RecordedProgram)
    assert _groups(meta) == _groups(real)


def test_multihead_attention_records_its_projections():
    """nn.MultiheadAttention's fused kernel is off while recording: its projections are seen."""
    mha = nn.MultiheadAttention(8, 2, batch_first=True).eval()

    class Attn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mha = mha

        def forward(self, x):
            return self.mha(x, x, x, need_weights=False)[0]

    before = torch.backends.mha.get_fastpath_enabled()
    analysis = prunec.analyze(Attn().eval(), torch.randn(2, 5, 8), tracer="record")
    ops = {op.op for op in analysis.graph.ops()}
    assert "aten::_native_multi_head_attention" not in ops and "aten::linear" in ops
    assert torch.backends.mha.get_fastpath_enabled() == before


class TwoStage(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(4, 2, 1))

    def forward(self, x):
        return self.head(self.conv(x))


@pytest.mark.parametrize("hooked", [False, True])
def test_module_origins_match_export_with_and_without_forward_hooks(hooked):
    """Ops are attributed to the innermost running submodule, as torch.export does; a forward
    pre-hook's op belongs to its module. The model's forwards are left as they were (an instance
    forward the user set included)."""
    model = TwoStage().eval()
    conv_forward = model.conv.forward
    model.conv.forward = conv_forward  # an instance attribute of the user's own
    if hooked:
        model.head.register_forward_pre_hook(lambda module, args: (args[0] * 2,))
    rec = prunec.analyze(model, X, tracer="record")
    exp = prunec.analyze(model, X, tracer="export")
    assert _ops(rec) == _ops(exp)
    origins = [(op.op, op.origin) for op in rec.graph.ops()]
    expected = [("aten::conv2d", "conv")] + [("aten::mul", "head")] * hooked + [
        ("aten::relu", "head.0"), ("aten::conv2d", "head.1")]
    assert origins == expected
    assert model.conv.__dict__["forward"] is conv_forward
    assert all("forward" not in m.__dict__ for name, m in model.named_modules() if name != "conv")
