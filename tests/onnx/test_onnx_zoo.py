"""Every CNN zoo model round-trips torch -> ONNX -> prunec -> onnxruntime with the contract holding."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from prunec.zoo import ZOO

import prunec
from tests.onnx.helpers import expected_params, export_zoo, params, relative_diff, run, zeroed

def _takes_an_image(name: str) -> bool:
    x = ZOO[name].example_inputs()
    return isinstance(x, torch.Tensor) and x.is_floating_point()


# image models (the text models of the zoo take token ids or keyword inputs)
CNNS = sorted(name for name, e in ZOO.items() if e.family != "gpt" and _takes_an_image(name))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Name -> path of the zoo model exported with a dynamic batch axis (exported once per module)."""
    directory = str(tmp_path_factory.mktemp("zoo_onnx"))
    cache: dict[str, str] = {}

    def get(name: str) -> str:
        if name not in cache:
            cache[name] = export_zoo(name, directory)
        return cache[name]
    return get


@pytest.mark.parametrize("name", CNNS)
def test_cnn_zoo_model_prunes_through_onnx(name, exported):
    """Verified in onnxruntime, exact parameter count, zeroed original equal, dynamic batch kept."""
    path = exported(name)
    original = onnx.load(path)
    result = prunec.prune(path, ratio=0.5)
    assert result.verification is not None and result.verification.passed
    assert result.report.channels_removed > 0
    assert params(result.model) == expected_params(original, result.removed)
    assert params(result.model) < 0.6 * params(original)
    x = np.random.default_rng(5).standard_normal((3, *ZOO[name].example_inputs().shape[1:])).astype(np.float32)
    got = run(result.model, {"x": x})  # batch 3: the exported dynamic batch survives pruning
    assert got[0].shape[0] == 3
    if all(g.zero_invariant for g in result.removed):
        assert relative_diff(got, run(zeroed(original, result.removed), {"x": x})) <= 1e-4
    else:  # LayerNorm over removed channels: prunec verified against the removal reference instead
        assert "channel-mixing" in result.verification.reference


def test_macs_target_and_round_to_hold_on_onnx(exported):
    """A MACs target is met and every pruned channel count is a multiple of round_to."""
    result = prunec.prune(exported("resnet_basic"), target="macs=0.5", round_to=8)
    assert result.report.macs_after <= 0.5 * result.report.macs_before
    assert result.report.macs_after > 0.3 * result.report.macs_before
    changed = [c for c in result.report.layers if c.dim == 0 and c.before > 8]
    assert changed and all(c.after % 8 == 0 for c in changed)
