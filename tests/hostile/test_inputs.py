"""Example inputs that do not fit the model: a specific InputError, and the model untouched."""

import pytest
import torch

import prunec
from tests.hostile.common import small, snapshot


def _refused(model, example, match, **kwargs):
    before = snapshot(model)
    with pytest.raises(prunec.InputError, match=match):
        prunec.prune(model, example, ratio=0.5, **kwargs)
    assert snapshot(model) == before


def test_wrong_shape():
    """4 input channels for a 3-channel conv: the message names the shape and the model's complaint."""
    model, _ = small()
    _refused(model, torch.randn(2, 4, 8, 8),
             r"the model fails on the example inputs \(\(2, 4, 8, 8\):float32\): RuntimeError: .*expected "
             r"input\[2, 4, 8, 8\] to have 3 channels.*Pass inputs of the shape, dtype and device")


def test_wrong_dtype():
    """float64 inputs for a float32 model: the dtype is named."""
    model, x = small()
    _refused(model, x.double(), r"fails on the example inputs \(\(2, 3, 8, 8\):float64\): .*double")


def test_integer_inputs_for_a_float_model():
    """Token-like int64 inputs for a conv net: refused with the dtype named."""
    model, x = small()
    _refused(model, x.long(), r"\(\(2, 3, 8, 8\):int64\): RuntimeError")


def test_inputs_on_another_device_than_the_model():
    """Meta inputs for a CPU model: the two devices are named before anything is traced."""
    model, x = small()
    _refused(model, x.to("meta"), r"the example inputs are on meta but the model's parameters and buffers "
                                  r"are on cpu; move them to one device")


def test_model_on_another_device_than_the_inputs():
    """A meta model with CPU inputs: the same message, the other way round."""
    model, x = small()
    model = model.to("meta")
    _refused(model, x, r"the example inputs are on cpu but the model's parameters and buffers are on meta")


def test_inputs_that_hold_no_tensor():
    """A tuple of plain numbers is not an example input."""
    model, _ = small()
    _refused(model, (1, 2.0), "example_inputs hold no tensor; pass at least one input tensor")


def test_inputs_of_an_unsupported_type():
    """A string is neither a tensor, a tuple nor a dict."""
    model, _ = small()
    _refused(model, "image.png", "example_inputs must be a tensor, a tuple of positional tensors or a dict "
                                 "of keyword tensors; got str")


def test_nan_in_the_example_inputs():
    """NaN inputs would make every comparison vacuous: refused, naming the input."""
    model, x = small()
    x[0, 0, 0, 0] = float("nan")
    _refused(model, x, r"'example input 0' holds 1 NaN and 0 infinite value\(s\)")
