"""Latency tables: built per op at a few widths, cached on disk, and used to meet latency targets.

A deterministic clock stands in for the wall clock (timings in tests would be flaky); the real
measurement is in bench/latency.py.
"""

import json
import re
from dataclasses import dataclass

import pytest
import torch
from prunec.zoo import ZOO
from torch.utils._python_dispatch import TorchDispatchMode

import prunec
from prunec.inputs import ExampleInputs
from prunec.latency import LatencyModel, LatencyTable, build_table, cache_dir


@dataclass
class CountingClock:
    """Fake clock: an op 'takes' 1 us plus 1 ns per output element; a model, the sum of its ops."""

    calls: int = 0
    name: str = "fake"

    def time_op(self, fn, device):
        self.calls += 1
        out = fn()
        leaves = [t for t in torch.utils._pytree.tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        return 1e-6 + 1e-9 * sum(t.numel() for t in leaves)

    def time_model(self, module, inputs):
        counter = _OpCost()
        with torch.no_grad(), counter:
            inputs.call(module)
        return counter.seconds


class _OpCost(TorchDispatchMode):
    """Adds up the fake clock's cost of every ATen op a call dispatches."""

    seconds = 0.0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        leaves = [t for t in torch.utils._pytree.tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        self.seconds += 1e-6 + 1e-9 * sum(t.numel() for t in leaves)
        return out


def fake_model(model, x):
    """A LatencyModel of `model` on `x` built with the fake clock (not cached)."""
    analysis = prunec.analyze(model, x)
    return LatencyModel.build(analysis, ExampleInputs.from_user(x), clock=CountingClock(), cache=False)


def test_table_has_a_point_per_op_and_width():
    """Every timed op gets one (size, seconds) point per width, and sizes shrink with the width."""
    model = ZOO["vgg_bn"].build()
    x = torch.randn(1, 3, 32, 32)
    table = fake_model(model, x).table
    conv = table.points["conv2d_1"]
    assert len(conv) == 4
    sizes = [p[0] for p in conv]
    assert sizes == sorted(sizes) and sizes[0] < 0.1 * sizes[-1]
    assert set(table.measured) == {"1", "0.75", "0.5", "0.25"}
    assert table.measured["0.5"] < table.measured["1"]


def test_tables_are_cached_on_disk(tmp_path, monkeypatch):
    """The second build reads the JSON file instead of timing anything."""
    monkeypatch.setenv("PRUNEC_CACHE", str(tmp_path))
    model = ZOO["vgg_bn"].build()
    x = torch.randn(1, 3, 32, 32)
    analysis = prunec.analyze(model, x)
    inputs = ExampleInputs.from_user(x)
    first_clock, second_clock = CountingClock(), CountingClock()
    first = build_table(analysis, inputs, clock=first_clock)
    second = build_table(analysis, inputs, clock=second_clock)
    files = list(cache_dir().glob("*.json"))
    assert len(files) == 1 and files[0].parent == tmp_path / "latency"
    assert first_clock.calls > 0 and second_clock.calls == 0
    assert second == first
    assert json.loads(files[0].read_text())["key"] == first.key
    assert LatencyTable.from_json(first.to_json()) == first


@pytest.mark.parametrize("selection", ["uniform", "global"])
def test_latency_target_is_met_as_measured(selection):
    """latency=0.5 ends with the measured latency within 10% of half the dense latency."""
    model = ZOO["resnet_basic"].build()
    x = torch.randn(1, 3, 16, 16)
    result = prunec.prune(model, x, target="latency=0.5", selection=selection,
                          latency=fake_model(model, x))
    note = next(n for n in result.report.notes if n.startswith("latency selection"))
    measured = float(re.search(r"measured (\S+) of", note).group(1))
    assert abs(measured - 0.5) <= 0.05
    assert result.verification is not None and result.verification.passed


def test_prediction_tracks_measurement_between_widths():
    """At 60% width (between measured widths) the interpolated prediction is within 10% of the clock."""
    model = ZOO["resnet_basic"].build()
    x = torch.randn(1, 3, 16, 16)
    lm = fake_model(model, x)
    analysis = prunec.analyze(model, x)
    masks = {g.id: tuple(range(int(round(g.channel_count * 0.6)), g.channel_count)) for g in analysis.groups}
    predicted = lm.predicted_fraction(analysis)(masks)
    measured = lm.measured_fraction(analysis, ExampleInputs.from_user(x), masks)
    assert predicted == pytest.approx(measured, rel=0.1)
    assert 0.2 < measured < 0.8
