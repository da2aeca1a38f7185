"""Recording torch.nn leaf modules from templates gives exactly the recording made op by op, and
starts over with full arithmetic whenever a skipped value could matter."""

from __future__ import annotations

import threading

import pytest
import torch
from prunec.zoo import ZOO
from torch import nn

import prunec
from prunec.frontends.torch_record import NotRecordable, Ref, _record, record
from prunec.inputs import ExampleInputs


def _calls(rec) -> list[tuple]:
    """The recording with every Ref replaced by its value's name and (size, dtype)."""

    def arg(a):
        if isinstance(a, Ref):
            return (rec.names[a.id], rec.meta[a.id])
        if isinstance(a, (list, tuple)):
            return type(a)(arg(x) for x in a)
        return a

    return [(c.target, arg(c.args), {k: arg(v) for k, v in c.kwargs.items()}, c.name,
             [None if r is None else (rec.names[r], rec.meta[r]) for r in c.outs], c.sequence, c.modules, c.other)
            for c in rec.calls]


def _both(model: nn.Module, inputs: ExampleInputs):
    model.eval()
    with torch.no_grad():
        memo = _record(model, inputs, memo=True)
        plain = _record(model, inputs, memo=False)
    return memo, plain


def _assert_same(memo, plain) -> None:
    a, b = memo[0].recording, plain[0].recording
    assert _calls(a) == _calls(b)
    assert [(n, r is not None) for n, r, _ in a.inputs] == [(n, r is not None) for n, r, _ in b.inputs]
    assert sorted(t for t, _ in a.attrs.values()) == sorted(t for t, _ in b.attrs.values())
    assert [a.names[o.id] if isinstance(o, Ref) else o for o in a.outputs] == \
        [b.names[o.id] if isinstance(o, Ref) else o for o in b.outputs]
    assert a.suspicious == b.suspicious


@pytest.mark.parametrize("name", sorted(ZOO))
def test_memoized_recording_equals_the_op_by_op_one_on_every_zoo_model(name):
    entry = ZOO[name]
    memo, plain = _both(entry.build(), ExampleInputs.from_user(entry.example_inputs()))
    _assert_same(memo, plain)


def test_repeated_leaf_calls_are_skipped_not_computed():
    """A deep MLP: after the first Linear and ReLU, every call comes from the template."""
    model = nn.Sequential(*[m for _ in range(6) for m in (nn.Linear(16, 16), nn.ReLU())])
    memo, plain = _both(model, ExampleInputs((torch.randn(4, 16),)))
    _assert_same(memo, plain)
    assert memo[2] is True and plain[2] is False
    assert len(memo[0].recording.calls) == 12


class ArgmaxOfHidden(nn.Module):
    """Integer indices computed from a (skippable) Linear output pick embedding rows."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)
        self.emb = nn.Embedding(8, 4)

    def forward(self, x):
        return self.emb(self.b(self.a(x)).argmax(-1))


class NonzeroOfHidden(nn.Module):
    """A data-dependent size computed from a skippable output."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)

    def forward(self, x):
        h = self.b(self.a(x))
        return torch.nonzero(h.flatten() > 0).shape[0] + h


@pytest.mark.parametrize("cls", [ArgmaxOfHidden])
def test_values_that_matter_are_recomputed(cls):
    """The skipped output of `b` feeds argmax: the recorder starts over with full arithmetic; the
    recording and the returned outputs are the real ones."""
    torch.manual_seed(0)
    model, x = cls().eval(), torch.randn(5, 8)
    with torch.no_grad():
        _, _, skipped = _record(model, ExampleInputs((x,)), memo=False)
        program, out = record(model, ExampleInputs((x,)))
        plain = _record(model, ExampleInputs((x,)), memo=False)
        expected = model(x)
    assert skipped is False
    assert _calls(program.recording) == _calls(plain[0].recording)
    assert out is not None and torch.equal(out, expected)


def test_sizes_read_off_values_are_never_recorded():
    """nonzero's size depends on the values (and here reaches Python as a constant): a recording
    would keep this input's count, and on a skipped value a count read off uninitialized memory. It
    is refused (with or without the memo) and torch.export decides; the analysis then reports it."""
    model, x = NonzeroOfHidden().eval(), torch.randn(5, 8)
    for memo in (True, False):
        with pytest.raises(NotRecordable, match=r"aten\.nonzero\.default makes a tensor whose size depends"):
            with torch.no_grad():
                record(model, ExampleInputs((x,)), memo=memo)
    with pytest.raises(prunec.TraceError):
        prunec.analyze(model, x)


def test_indexing_with_integer_tensors_is_recorded():
    """x[idx] with an int64 index has a value-independent size: recorded, memo or not."""

    class Gather(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)

        def forward(self, x, idx):
            return self.b(self.a(x))[idx]

    memo, plain = _both(Gather(), ExampleInputs((torch.randn(5, 8), torch.tensor([0, 2, 4]))))
    _assert_same(memo, plain)
    assert memo[2] is True


class InplaceOnInput(nn.Module):
    """The second ReLU(inplace=True) call (a template hit) writes into the model input."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.r1, self.r2 = nn.ReLU(inplace=True), nn.ReLU(inplace=True)

    def forward(self, x):
        return self.r1(self.fc(x)) + self.r2(x)


def test_a_template_hit_that_writes_into_a_model_input_is_refused():
    model, x = InplaceOnInput().eval(), torch.randn(3, 8)
    before = x.clone()
    with pytest.raises(NotRecordable, match="writes into a model input"):
        with torch.no_grad():
            _record(model, ExampleInputs((x,)), memo=True)
    assert torch.equal(x, before)
    analysis = prunec.analyze(model, x)  # falls back to torch.export, which never writes
    assert isinstance(analysis.source.exported, torch.export.ExportedProgram)
    assert torch.equal(x, before)


class Plumbing(nn.Module):
    """Leaves that return their input object, change an attribute between calls, or hold a tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.id1, self.id2 = nn.Identity(), nn.Identity()
        self.pool = nn.AvgPool1d(2)
        self.fc = nn.Linear(4, 4)
        self.fc.extra = torch.ones(1)  # a plain tensor attribute: this leaf cannot be keyed
        self.fc2 = nn.Linear(4, 4)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        y = self.id2(self.id1(x))
        self.pool.stride = (2,)
        a = self.pool(y)
        self.pool.stride = (1,)  # same module, new configuration: a different key
        b = self.pool(y)
        return self.drop(self.fc2(self.fc(a[..., :4]))) + b[..., :4].sum() + y[..., :4]


def test_identity_attribute_changes_unkeyable_leaves_and_inert_dropout():
    model, x = Plumbing().eval(), torch.randn(2, 3, 8)
    memo, plain = _both(model, ExampleInputs((x,)))
    _assert_same(memo, plain)
    assert memo[0].recording.suspicious == []  # dropout with train=False is deterministic
    assert [c.target for c in memo[0].recording.calls].count(torch.ops.aten.avg_pool1d.default) == 2
    strides = [c.args[2] for c in memo[0].recording.calls if c.target == torch.ops.aten.avg_pool1d.default]
    assert strides == [[2], [1]]


tv = pytest.importorskip("torchvision")


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "densenet121", "shufflenet_v2_x0_5",
                                  "regnet_x_400mf", "efficientnet_b0", "convnext_tiny"])
@pytest.mark.parametrize("meta_threshold", [None, 0])
def test_memoized_recording_equals_the_op_by_op_one_on_torchvision_models(name, meta_threshold, monkeypatch):
    """Default settings, and every Linear/Conv first call on meta twins."""
    from prunec.frontends import leaf_memo

    if meta_threshold is not None:
        monkeypatch.setattr(leaf_memo, "META_CAPTURE_MACS", meta_threshold)
        monkeypatch.setattr(leaf_memo, "META_CAPTURE_POOL_ELEMENTS", meta_threshold)
    torch.manual_seed(0)
    model = tv.models.get_model(name, weights=None)
    memo, plain = _both(model, ExampleInputs((torch.randn(1, 3, 64, 64),)))
    _assert_same(memo, plain)
    assert memo[2] is True


@pytest.fixture
def meta_for_every_linear_and_conv(monkeypatch):
    """Record the first call of every Linear/Conv on meta twins, however small."""
    from prunec.frontends import leaf_memo

    monkeypatch.setattr(leaf_memo, "META_CAPTURE_MACS", 0)
    monkeypatch.setattr(leaf_memo, "META_CAPTURE_POOL_ELEMENTS", 0)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_first_calls_on_meta_twins_record_the_same_program(name, meta_for_every_linear_and_conv):
    """Linear/Conv first calls run on meta twins (their state registered under its own names, in
    first-use order): the recording is the op-by-op one, on every zoo model."""
    entry = ZOO[name]
    model = entry.build()
    memo, plain = _both(model, ExampleInputs.from_user(entry.example_inputs()))
    _assert_same(memo, plain)
    assert [ref for ref, _ in sorted(memo[0].recording.attrs.items())] == \
        [ref for ref, _ in sorted(plain[0].recording.attrs.items())]
    # the recording refers to the model's own tensors, never to meta twins
    own = {id(t) for t in [*model.parameters(), *model.buffers()]}
    assert all(id(t) in own for target, t in memo[0].recording.attrs.values()
               if not target.startswith("_prunec_constant"))
    assert all(t.device.type != "meta" for _, t in memo[0].recording.attrs.values())


def test_meta_first_calls_skip_the_arithmetic_and_keep_the_model(meta_for_every_linear_and_conv):
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.MaxPool2d(1), nn.Conv2d(8, 8, 3, groups=2),
                          nn.Flatten(), nn.Linear(8 * 4 * 4, 5)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 8, 8)
    memo, plain = _both(model, ExampleInputs((x,)))
    _assert_same(memo, plain)
    assert memo[2] is True
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    rec = memo[0].recording
    assert {t: tensor for t, tensor in rec.attrs.values()}["0.weight"] is model[0].weight
    assert torch.ops.aten.max_pool2d.default in [c.target for c in rec.calls]
    fast, exported = prunec.analyze(model, x), prunec.analyze(model, x, tracer="export")
    assert [(g.channel_count, g.members) for g in fast.groups] == [(g.channel_count, g.members) for g in exported.groups]
    # each conv's 8 filters, paired across its 2 conv groups: 4 channels each; the head is pinned
    assert [g.channel_count for g in fast.groups] == [4, 4]
    assert [m.indices for m in fast.groups[1].members[:2]] == [tuple(range(8))] * 2


class _Gate(nn.Module):
    """Holds the analysing thread inside the forward until another thread has run the model."""

    def __init__(self) -> None:
        super().__init__()
        self.hold: int | None = None
        self.entered, self.release = threading.Event(), threading.Event()

    def forward(self, x):
        if threading.get_ident() == self.hold:
            self.entered.set()
            self.release.wait(10)
        return x


def test_another_thread_running_the_model_during_analysis_gets_real_outputs():
    """The recorder's forward shadows and hooks act on the analysing thread only: a thread serving the
    same model meanwhile computes every module (no template, no skipped values)."""
    torch.manual_seed(0)
    gate = _Gate()
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), gate, nn.Linear(8, 8)).eval()
    x = torch.randn(4, 8)
    other = x  # the very tensor the recording knows: its memo would answer with skipped values
    with torch.no_grad():
        expected = model(other)
    got: list[torch.Tensor] = []

    def serve() -> None:
        gate.entered.wait(10)
        with torch.no_grad():
            got.append(model(other))
        gate.release.set()

    worker = threading.Thread(target=serve)
    worker.start()
    gate.hold = threading.get_ident()
    analysis = prunec.analyze(model, x)
    worker.join(10)
    assert gate.entered.is_set() and len(got) == 1
    assert torch.equal(got[0], expected)
    assert [g.channel_count for g in analysis.groups] == [8, 8]


def test_another_thread_may_read_tensor_data_during_analysis():
    """Tensor.tolist()/numpy() are refused while recording, in the recording thread only."""
    gate = _Gate()
    model = nn.Sequential(nn.Linear(3, 3), gate).eval()
    seen: list[object] = []

    def read() -> None:
        gate.entered.wait(10)
        t = torch.arange(3.0)
        seen.extend([t.tolist(), float(t.numpy().sum())])
        gate.release.set()

    worker = threading.Thread(target=read)
    worker.start()
    gate.hold = threading.get_ident()
    prunec.analyze(model, torch.randn(2, 3))
    worker.join(10)
    assert seen == [[0.0, 1.0, 2.0], 3.0]
