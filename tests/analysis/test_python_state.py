"""Tracing runs the forward; the Python state it changes is put back (prunec/frontends/python_state.py)."""

import pytest
import torch
from torch import nn

import prunec
from prunec.frontends.model_index import ModelIndex
from prunec.frontends.python_state import python_state_kept
from tests.helpers import Gate


class _CachedBias(nn.Module):
    """Like timm's LeViT attention: in eval mode, a tensor gathered from a parameter is cached by
    device; other Python state changes on every call."""

    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, padding=1)
        self.bias_table = nn.Parameter(torch.randn(channels, 4))
        self.register_buffer("bias_idx", torch.tensor([0, 2]), persistent=False)
        self.bias_cache: dict[str, torch.Tensor] = {}
        self.calls = 0
        self.seen_shapes: list[tuple[int, ...]] = []
        self.flags: set[str] = set()
        self.head = nn.Conv2d(channels, 2, 1)

    def biases(self) -> torch.Tensor:
        if self.training:
            return self.bias_table[:, self.bias_idx]
        key = str(self.bias_table.device)
        if key not in self.bias_cache:
            self.bias_cache[key] = self.bias_table[:, self.bias_idx]
        return self.bias_cache[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.seen_shapes.append(tuple(x.shape))
        self.flags.add("ran")
        self.last_input_rank = x.dim()  # a new attribute, set by forward
        y = self.conv(x) + self.biases().sum(1)[None, :, None, None]
        return self.head(torch.relu(y))


def _python_state(m: _CachedBias) -> tuple:
    return (dict(m.bias_cache), m.calls, list(m.seen_shapes), set(m.flags), hasattr(m, "last_input_rank"))


@pytest.mark.parametrize("tracer", ["record", "export"])
def test_tracing_leaves_python_state_as_it_was(tracer):
    model = _CachedBias().eval()
    x = torch.randn(2, 3, 8, 8)
    cache, list_, flags = model.bias_cache, model.seen_shapes, model.flags
    analysis = prunec.analyze(model, x, tracer=tracer)
    assert analysis.source.tracer == tracer
    assert _python_state(model) == ({}, 0, [], set(), False)
    # the same containers, emptied in place (code holding a reference to them sees the restore)
    assert model.bias_cache is cache and model.seen_shapes is list_ and model.flags is flags
    (group,) = analysis.groups  # conv's filters, the bias table's rows and head's inputs
    assert {(m.param, m.dim) for m in group.members} == {
        ("conv.weight", 0), ("conv.bias", 0), ("bias_table", 0), ("head.weight", 1)}


def test_state_set_before_tracing_is_kept():
    """What the user's own forward put there stays (only the trace's changes are undone)."""
    model = _CachedBias().eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        model(x)
    before = _python_state(model)
    prunec.analyze(model, x)
    after = _python_state(model)
    assert after[1:] == before[1:] and after[1] == 1
    assert list(after[0]) == ["cpu"] and after[0]["cpu"] is before[0]["cpu"]


def test_pruned_model_keeps_its_class_with_a_forward_cache():
    """Without the restore, the deep copy that is pruned would carry a cache of the old width, fail
    verification as its own class and come back as a GraphModule."""
    model = _CachedBias(channels=8).eval()
    x = torch.randn(2, 3, 8, 8)
    result = prunec.prune(model, x, ratio=0.5)
    assert result.analysis.source.tracer == "record"
    assert type(result.model) is _CachedBias and result.output_kind == "module"
    assert result.model.conv.out_channels == 4 and result.model.bias_table.shape == (4, 4)
    assert model.bias_cache == {}  # the user's model was not run (nor changed)
    # verification ran the pruned model in eval mode: its cache holds the pruned width
    assert [tuple(t.shape) for t in result.model.bias_cache.values()] in ([], [(4, 2)])
    assert result.verification.passed and result.verification.max_relative_diff <= 1e-4


def test_restore_undoes_each_kind_of_change():
    model = _CachedBias().eval()
    index = ModelIndex.of(model)
    keep_list = model.seen_shapes
    with python_state_kept(index):
        model.calls = 5                      # rebound
        model.seen_shapes.append((1,))       # list changed in place
        model.seen_shapes = [(9,)]           # ... and then rebound
        model.flags.update({"a", "b"})       # set changed in place
        model.bias_cache["x"] = torch.ones(1)  # dict changed in place
        model.extra = "new"                  # added
    assert _python_state(model) == ({}, 0, [], set(), False)
    assert model.seen_shapes is keep_list and not hasattr(model, "extra")


def test_torch_modules_are_not_snapshotted():
    """torch's own modules are skipped: their forwards keep no Python state."""
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    index = ModelIndex.of(model)
    with python_state_kept(index):
        model[0].note = "kept"
    assert model[0].note == "kept"


class _CachedThenGated(_CachedBias):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x) + self.biases().sum(1)[None, :, None, None]
        return self.head(Gate.apply(y))


def test_fallback_starts_from_the_state_the_user_gave():
    """The recording fills the cache before it meets the autograd.Function and gives up; torch.export
    must then trace the model with its cache empty (a filled one would be a constant instead of a
    gather from the bias table), and the model ends as it began. (The Function has no op rule, so
    its channels are pinned either way.)"""
    model = _CachedThenGated().eval()
    analysis = prunec.analyze(model, torch.randn(2, 3, 8, 8))
    assert analysis.source.tracer == "export"
    assert model.bias_cache == {}
    gathers = [op for op in analysis.graph.ops() if op.op == "aten::index"]
    assert len(gathers) == 1 and analysis.graph.inputs(gathers[0])[0][1].param == "bias_table"
