"""Hostile ONNX inputs: corrupt, truncated or non-ONNX files, unsupported opsets, NaN weights, inputs of
the wrong shape or dtype. Each raises its own error class and message, and no file changes.
"""

import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

import prunec
from tests.hostile.common import small, tree_bytes


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory):
    """SmallNet exported with the TorchScript exporter, plus broken variants of it."""
    root = tmp_path_factory.mktemp("onnx")
    model, x = small()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), root / "good.onnx", dynamo=False, input_names=["x"], opset_version=17)
    good = (root / "good.onnx").read_bytes()
    (root / "corrupt.onnx").write_bytes(good[:100] + b"\xff" * 50 + good[150:])
    (root / "truncated.onnx").write_bytes(good[: len(good) // 2])
    (root / "text.onnx").write_text("name,value\nconv1,3\n")
    (root / "empty.onnx").write_bytes(b"")
    for version in (99, 5):
        proto = onnx.load(root / "good.onnx")
        proto.opset_import[0].version = version
        onnx.save(proto, root / f"opset{version}.onnx")
    proto = onnx.load(root / "good.onnx")
    init = next(t for t in proto.graph.initializer if t.name == "conv2.weight")
    values = numpy_helper.to_array(init).copy()
    values.flat[3] = np.nan
    init.CopyFrom(numpy_helper.from_array(values, init.name))
    onnx.save(proto, root / "nan.onnx")
    return root


@pytest.mark.parametrize("name, error, match", [
    ("corrupt.onnx", prunec.OnnxModelError, r"corrupt.onnx' is not a readable ONNX model \(DecodeError: .*\); the "
                                            r"file may be truncated, corrupt, or not an ONNX file"),
    ("truncated.onnx", prunec.OnnxModelError, r"truncated.onnx' is not a readable ONNX model"),
    ("text.onnx", prunec.OnnxModelError, r"text.onnx' is not a readable ONNX model"),
    ("empty.onnx", prunec.OnnxModelError, r"empty.onnx' holds no ONNX graph \(no nodes\)"),
    ("missing.onnx", prunec.OnnxModelError, r"ONNX file '.*missing.onnx' does not exist"),
    ("opset99.onnx", prunec.OnnxModelError, r"the model imports ONNX opset 99, newer than this onnx .* knows \(up "
                                            r"to \d+\); upgrade onnx and onnxruntime, or export the model with "
                                            r"opset_version <= \d+"),
    ("opset5.onnx", prunec.OnnxModelError, r"the model imports ONNX opset 5; prunec reads opsets 7 to \d+ .*"
                                           r"onnx.version_converter.convert_version\(model, 13\)"),
    ("nan.onnx", prunec.InputError, r"initializer 'conv2.weight' holds 1 NaN and 0 infinite value\(s\); channel "
                                    r"scores and verification need finite numbers"),
])
def test_broken_onnx_file(onnx_dir, name, error, match):
    """prune() and the file: a specific error, and every file in the directory byte-for-byte unchanged."""
    before = tree_bytes(onnx_dir)
    with pytest.raises(error, match=match):
        prunec.prune(str(onnx_dir / name), ratio=0.5)
    assert tree_bytes(onnx_dir) == before


@pytest.mark.parametrize("feeds, error, match", [
    ({"x": np.zeros((2, 4, 8, 8), np.float32)}, prunec.InputError,
     r"input 'x' is given shape \(2, 4, 8, 8\), but the model fixes axis 1 at 3 \(declared \(2, 3, 8, 8\)\)"),
    ({"x": np.zeros((2, 3, 8, 8), np.float64)}, prunec.InputError,
     r"example input 'x' is float64, but the model declares float32; convert it"),
    ({"x": np.full((2, 3, 8, 8), np.inf, np.float32)}, prunec.InputError,
     r"example input 'x' holds NaN or infinite values"),
    ({"image": np.zeros((2, 3, 8, 8), np.float32)}, prunec.InputError,
     r"input shape given for 'image', which is not an input of the model; its inputs are 'x'"),
    ((np.zeros((2, 3, 8, 8), np.float32),), prunec.InputError,
     r"example inputs of an ONNX model must be None or a dict \{input name: array\}"),
])
def test_onnx_example_inputs_that_do_not_fit(onnx_dir, feeds, error, match):
    """Wrong shape, dtype, values, name or container: InputError, and the file unchanged."""
    before = tree_bytes(onnx_dir)
    with pytest.raises(error, match=match):
        prunec.prune(str(onnx_dir / "good.onnx"), feeds, ratio=0.5)
    assert tree_bytes(onnx_dir) == before


@pytest.mark.parametrize("kwargs, error, match", [
    ({"ratio": 1.0}, prunec.TargetError, r"ratio=1.0 is the fraction of channels to REMOVE"),
    ({"ratio": -0.5}, prunec.TargetError, r"ratio=-0.5 is the fraction of channels to REMOVE"),
    ({"target": "macs=0"}, prunec.TargetError, r"macs=0.0 is the fraction of macs to KEEP"),
    ({"target": "params=2"}, prunec.TargetError, r"params=2.0 is the fraction of params to KEEP"),
    ({"target": "macs=0.001"}, prunec.TargetError, r"macs=0.001 cannot be reached: .*closest achievable"),
    ({"ratio": 0.5, "ignore": ["conv9"]}, prunec.InputError, r"ignore= names 'conv9', which matches no node or "
                                                             r"initializer of the model"),
])
def test_onnx_targets_and_ignore(onnx_dir, kwargs, error, match):
    """The same target and ignore= checks as the torch path, on an ONNX file."""
    before = tree_bytes(onnx_dir)
    with pytest.raises(error, match=match):
        prunec.prune(str(onnx_dir / "good.onnx"), **kwargs)
    assert tree_bytes(onnx_dir) == before


def test_onnx_progress_and_a_good_file(onnx_dir):
    """A valid file prunes, verifies, reports every step to the callback, and stays unchanged."""
    before = tree_bytes(onnx_dir)
    events = []
    result = prunec.prune(str(onnx_dir / "good.onnx"), ratio=0.5, progress=events.append)
    assert result.verification.passed and result.report.params_after < result.report.params_before
    assert [e.stage for e in events] == ["analyse", "score", "select", "rewrite", "verify", "done"]
    assert tree_bytes(onnx_dir) == before
