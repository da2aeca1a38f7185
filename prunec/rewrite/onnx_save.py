"""Saving ONNX models: all-or-nothing writes, and external data streamed without loading it.

Models over ~2 GB (or ones whose original used external data) keep their initializers in
`<file>.data`; unchanged external tensors are copied from the original data file through a
memory map, so no weight is held in Python twice.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import onnx

from prunec.errors import OnnxModelError
from prunec.frontends.onnx_tensors import np_dtype

TWO_GB = 2 * 1024**3
EXTERNAL_MIN_BYTES = 1024

def _tensor_bytes(t: onnx.TensorProto) -> int:
    try:
        return int(np.prod(t.dims, dtype=np.int64)) * np_dtype(t.data_type).itemsize
    except Exception:  # string tensors and friends
        return len(t.SerializeToString())


def save_model(model: onnx.ModelProto, path: str, *, base_dir: str | None = None,
               external_data: bool | None = None) -> None:
    """Save `model` to `path`; large models (or `external_data=True`) put their initializers in
    `<file>.data`, streaming external tensors from `base_dir` without loading them. Written to
    temporary files first and renamed, so a failure leaves no partial output.
    """
    out_dir = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(out_dir):
        raise OnnxModelError(f"cannot write {path!r}: directory {out_dir!r} does not exist")
    has_external = any(onnx.external_data_helper.uses_external_data(t) for t in model.graph.initializer)
    total = sum(_tensor_bytes(t) for t in model.graph.initializer)
    use_external = external_data if external_data is not None else (has_external or total > TWO_GB * 0.9)
    data_name = os.path.basename(path) + ".data"
    fd, tmp_model = tempfile.mkstemp(dir=out_dir, prefix=".prunec-", suffix=".onnx")
    os.close(fd)
    tmp_data = tmp_model + ".data"
    try:
        if use_external:
            proto = _shell(model)
            _write_external(model.graph.initializer, proto, base_dir, tmp_data, data_name)
        else:
            proto = model
        with open(tmp_model, "wb") as f:
            f.write(proto.SerializeToString())
        umask = os.umask(0)
        os.umask(umask)
        if use_external:
            os.chmod(tmp_data, 0o666 & ~umask)
            os.replace(tmp_data, os.path.join(out_dir, data_name))
        os.chmod(tmp_model, 0o666 & ~umask)  # mkstemp files are private; outputs get the usual mode
        os.replace(tmp_model, path)
    finally:
        for p in (tmp_model, tmp_data):
            if os.path.exists(p):
                os.remove(p)


def _copy_fields(src: object, dst: object, skip: str) -> None:
    for fd, value in src.ListFields():  # type: ignore[attr-defined]  # protobuf messages
        if fd.name == skip:
            continue
        if fd.is_repeated:
            getattr(dst, fd.name).extend(value)
        elif fd.message_type is not None:
            getattr(dst, fd.name).CopyFrom(value)
        else:
            setattr(dst, fd.name, value)


def _shell(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` without initializers (their bytes are streamed separately)."""
    proto = onnx.ModelProto()
    _copy_fields(model, proto, "graph")
    _copy_fields(model.graph, proto.graph, "initializer")
    return proto


def _write_external(tensors: object, proto: onnx.ModelProto, base_dir: str | None, tmp_data: str,
                    data_name: str) -> None:
    offset = 0
    with open(tmp_data, "wb") as out:
        for t in tensors:  # type: ignore[attr-defined]  # a repeated TensorProto field
            size = _tensor_bytes(t)
            external = onnx.external_data_helper.uses_external_data(t)
            if not external and size < EXTERNAL_MIN_BYTES:
                proto.graph.initializer.append(t)
                continue
            if external:
                if base_dir is None:
                    raise OnnxModelError(f"initializer {t.name!r} refers to external data but the model's "
                                         "directory is unknown")
                data = _external_bytes(t, base_dir)
            else:
                data = memoryview(t.raw_data) if t.raw_data else memoryview(onnx.numpy_helper.to_array(t).tobytes())
            pad = (-offset) % 4096
            out.write(b"\0" * pad)
            offset += pad
            out.write(data)
            new = onnx.TensorProto(name=t.name, data_type=t.data_type, dims=list(t.dims))
            for key, value in (("location", data_name), ("offset", str(offset)), ("length", str(len(data)))):
                entry = new.external_data.add()
                entry.key, entry.value = key, value
            new.data_location = onnx.TensorProto.EXTERNAL
            offset += len(data)
            proto.graph.initializer.append(new)


def _external_bytes(t: onnx.TensorProto, base_dir: str) -> memoryview:
    info = onnx.external_data_helper.ExternalDataInfo(t)
    length = info.length or _tensor_bytes(t)
    if length == 0:
        return memoryview(b"")
    mm = np.memmap(os.path.join(base_dir, info.location), dtype=np.uint8, mode="r", offset=info.offset,
                   shape=(length,))
    return memoryview(mm)
