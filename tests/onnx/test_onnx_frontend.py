"""The ONNX frontend: initializers are parameters, shape arithmetic is folded, inputs get concrete shapes,
external data is read lazily, and unreadable files fail with a clear message.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import prunec
from prunec.errors import InputError, OnnxModelError
from prunec.frontends.onnx_graph import load
from prunec.ir.graph import ValueKind
from tests.onnx.helpers import export_zoo, rand, run


def _flatten_model(symbolic: tuple[str | int, ...] = ("N", 3, 4, 4)) -> onnx.ModelProto:
    """Conv -> Reshape(x, concat(shape(x)[0], -1)) -> Gemm, the way exporters write x.view(b, -1)."""
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Shape", ["c"], ["s"]),
        helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.asarray(0, np.int64))),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Constant", [], ["ax"], value=numpy_helper.from_array(np.asarray([0], np.int64))),
        helper.make_node("Unsqueeze", ["n", "ax"], ["n1"]),
        helper.make_node("Constant", [], ["m1"], value=numpy_helper.from_array(np.asarray([-1], np.int64))),
        helper.make_node("Concat", ["n1", "m1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["c", "shape"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fw"], ["y"], transB=1),
    ]
    graph = helper.make_graph(nodes, "flat", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, symbolic)],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ("N", 5))],
                              [numpy_helper.from_array(rand(8, 3, 3, 3), "w"), numpy_helper.from_array(rand(8), "b"),
                               numpy_helper.from_array(rand(5, 8 * 16), "fw")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_initializers_are_params_and_shape_arithmetic_is_folded():
    """Float initializers become PARAM values; Shape->Gather->Concat is folded into Reshape's attribute."""
    source = load(_flatten_model(), batch=2)
    g = source.graph
    assert {v.name: v.kind for v in g.values() if v.is_state} == {"w": ValueKind.PARAM, "b": ValueKind.PARAM,
                                                                "fw": ValueKind.PARAM}
    assert g.value("x").shape == (2, 3, 4, 4) and g.value("x").kind == ValueKind.INPUT
    assert sorted(op.op for op in g.ops()) == ["onnx::Conv", "onnx::Gemm", "onnx::Reshape"]
    assert g.op("flatten").attrs["shape"] == (2, -1)
    assert g.value("shape").kind == ValueKind.CONSTANT
    assert g.value("f").shape == (2, 128)


def test_folded_shape_arithmetic_still_adapts_after_pruning():
    """The flatten's dynamic shape stays in the pruned graph: it runs at another batch size."""
    result = prunec.prune(_flatten_model(), ratio=0.5)
    assert result.verification.passed
    assert "Shape" in {n.op_type for n in result.model.graph.node}
    out = run(result.model, {"x": np.zeros((7, 3, 4, 4), np.float32)})
    assert out[0].shape == (7, 5)
    w = {t.name: t for t in result.model.graph.initializer}["fw"]
    assert list(w.dims) == [5, 4 * 16]


def test_symbolic_dim_other_than_batch_needs_a_shape():
    """A symbolic non-batch dim is an InputError that says which flag to pass."""
    model = _flatten_model(("N", 3, "H", 4))
    with pytest.raises(InputError, match=r"input 'x' has a symbolic dimension 'H' at axis 2; pass a concrete "
                                         r"shape, e\.g\. --input-shape x=1,3,N,4"):
        load(model)
    assert load(model, input_shapes={"x": (1, 3, 4, 4)}).graph.value("x").shape == (1, 3, 4, 4)


def test_input_shape_for_unknown_input_is_rejected():
    """A shape for an input the model does not have names the real inputs."""
    with pytest.raises(InputError, match=r"input shape given for 'image', which is not an input of the model; "
                                         r"its inputs are 'x'"):
        load(_flatten_model(), input_shapes={"image": (1, 3, 4, 4)})


def test_external_data_is_memory_mapped_and_saved_externally(tmp_path):
    """Initializers in external data are read through np.memmap (no copy); the pruned model is saved
    with its own data file, loads in onnxruntime and equals the model pruned from the inline file.
    """
    import onnxruntime as ort

    path = export_zoo("vgg_bn", str(tmp_path))
    ext = str(tmp_path / "ext.onnx")
    onnx.save_model(onnx.load(path), ext, save_as_external_data=True, location="ext.onnx.data", size_threshold=0)
    source = load(ext)
    weight = next(v.param for v in source.graph.state_values() if v.rank == 4)
    assert isinstance(source.tensors.array(weight), np.memmap)
    out = str(tmp_path / "small.onnx")
    prunec.prune(ext, ratio=0.5).save(out)
    assert os.path.getsize(out + ".data") > 10 * os.path.getsize(out)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    from_file = ort.InferenceSession(out, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    inline = prunec.prune(path, ratio=0.5).model
    assert np.allclose(from_file, run(inline, {"x": x})[0], atol=1e-6)
    assert os.stat(out).st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize(("content", "message"), [
    (b"hello, this is not a model\n", r"'{p}' is not a readable ONNX model \(DecodeError: .*\); the file may "
                                      r"be truncated, corrupt, or not an ONNX file"),
    (b"", r"'{p}' holds no ONNX graph \(no nodes\); the file may be truncated, corrupt, or not an ONNX file"),
    ("truncated", r"'{p}' is not a readable ONNX model \(DecodeError: .*\); the file may be truncated"),
])
def test_unreadable_files_fail_clearly(tmp_path, content, message):
    """Text, empty and truncated files raise OnnxModelError naming the file and the likely cause."""
    path = tmp_path / "bad.onnx"
    if content == "truncated":
        data = _flatten_model().SerializeToString()
        content = data[: len(data) // 2]
    path.write_bytes(content)
    with pytest.raises(OnnxModelError, match=message.format(p=str(path).replace("/", "/"))):
        prunec.analyze(str(path))


def test_missing_file_and_directory_fail_clearly(tmp_path):
    """A missing path and a directory are OnnxModelErrors that say so."""
    with pytest.raises(OnnxModelError, match=r"ONNX file '.*missing\.onnx' does not exist"):
        prunec.analyze(str(tmp_path / "missing.onnx"))
    with pytest.raises(OnnxModelError, match=r"is a directory; pass the path of an \.onnx file"):
        prunec.analyze(str(tmp_path))


def test_graph_reading_an_undefined_tensor_fails_clearly():
    """A node that reads a tensor nobody produces is an OnnxModelError, not an internal error."""
    model = _flatten_model()
    model.graph.node[-1].input[0] = "nowhere"
    with pytest.raises(OnnxModelError, match=r"tensor 'nowhere' is read before any node produces it"):
        prunec.analyze(model)
