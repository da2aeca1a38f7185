"""Verify a pruned ONNX model with onnxruntime against the contract's reference.

The reference is the original model with every removed initializer slice set to zero. For
removed groups that are not zero-invariant (a LayerNormalization, a mean over channels or an
attention contraction mixes their channels), each such mixing node is evaluated on the kept
channels only: its inputs are gathered, and its outputs are put back in place with zeros at the
removed positions — removal in closed form exactly where it differs from zeroing.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from prunec.analysis.groups import RemovedGroup
from prunec.analysis.result import Analysis
from prunec.errors import OnnxModelError
from prunec.frontends.onnx_graph import OnnxSource
from prunec.verify import VerificationReport, raise_if_failed

Feeds = dict[str, np.ndarray]


def build_reference(analysis: Analysis, keep: np.ndarray, removed: Sequence[RemovedGroup]
                    ) -> tuple[onnx.ModelProto, int]:
    """The zeroed original (plus removal at channel-mixing nodes) and how many nodes were wrapped."""
    source: OnnxSource = analysis.source
    ref = onnx.ModelProto()
    ref.CopyFrom(source.model)
    fills: dict[str, list[tuple[int, tuple[int, ...]]]] = {}
    for group in removed:
        for s in group.members:
            fills.setdefault(s.param, []).append((s.dim, s.indices))
    by_name = {t.name: i for i, t in enumerate(ref.graph.initializer)}
    for name, parts in fills.items():
        values = np.array(source.tensors.array(name))
        for dim, idx in parts:
            index = [slice(None)] * values.ndim
            index[dim] = np.asarray(idx, dtype=np.int64)
            values[tuple(index)] = 0
        ref.graph.initializer[by_name[name]].CopyFrom(numpy_helper.from_array(values, name))
    wrapped = 0
    if not all(g.zero_invariant for g in removed):
        wrapped = _removal_at_mixing_nodes(ref, analysis, keep)
    del ref.graph.value_info[:]
    return ref, wrapped


def _removal_at_mixing_nodes(ref: onnx.ModelProto, analysis: Analysis, keep: np.ndarray) -> int:
    source: OnnxSource = analysis.source
    graph = analysis.graph
    extra: dict[int, tuple[list[onnx.NodeProto], list[onnx.NodeProto]]] = {}
    for op in graph.ops():
        if op.name not in analysis.coupling.reducing:
            continue
        gathered = {v.name: analysis.removed_axes(keep, v.name) for _, v in graph.inputs(op)}
        if not any(gathered.values()):
            continue
        i = source.node_index[op.name]
        node = ref.graph.node[i]
        before: list[onnx.NodeProto] = []
        after: list[onnx.NodeProto] = []
        for j, name in enumerate(node.input):
            axes = gathered.get(name)
            if not axes:
                continue
            current = name
            for axis, kept in sorted(axes.items()):
                idx = _const(before, f"{op.name}__kept_{j}_{axis}", np.asarray(kept, dtype=np.int64))
                out = f"{op.name}__in{j}_gathered{axis}"
                before.append(helper.make_node("Gather", [current, idx], [out], axis=axis))
                current = out
            node.input[j] = current
        for k, name in enumerate(list(node.output)):
            axes = analysis.removed_axes(keep, name) if name else {}
            if not axes:
                continue
            current = f"{name}__kept"
            node.output[k] = current
            for n_axis, (axis, kept) in enumerate(sorted(axes.items())):
                full = graph.value(name).shape[axis]
                dtype = np.dtype(graph.value(name).dtype)
                zeros = _zeros_like_slice(after, current, axis, dtype, f"{name}__zeros{axis}")
                padded = f"{name}__padded{axis}"
                after.append(helper.make_node("Concat", [current, zeros], [padded], axis=axis))
                inverse = np.full(full, len(kept), dtype=np.int64)
                inverse[np.asarray(kept, dtype=np.int64)] = np.arange(len(kept))
                inv = _const(after, f"{name}__inverse{axis}", inverse)
                out = name if n_axis == len(axes) - 1 else f"{name}__scattered{axis}"
                after.append(helper.make_node("Gather", [padded, inv], [out], axis=axis))
                current = out
        extra[i] = (before, after)
    nodes = []
    for i, node in enumerate(ref.graph.node):
        before, after = extra.get(i, ([], []))
        nodes += [*before, node, *after]
    del ref.graph.node[:]
    ref.graph.node.extend(nodes)
    return len(extra)


def _zeros_like_slice(nodes: list[onnx.NodeProto], x: str, axis: int, dtype: np.dtype, name: str) -> str:
    """Zeros shaped like x[..., 0:1, ...] along `axis` (any batch size)."""
    one = _const(nodes, f"{name}_one", np.asarray([1], dtype=np.int64))
    zero = _const(nodes, f"{name}_zero", np.asarray([0], dtype=np.int64))
    ax = _const(nodes, f"{name}_axis", np.asarray([axis], dtype=np.int64))
    nodes.append(helper.make_node("Slice", [x, zero, one, ax], [f"{name}_slice"]))
    nodes.append(helper.make_node("Shape", [f"{name}_slice"], [f"{name}_shape"]))
    nodes.append(helper.make_node("ConstantOfShape", [f"{name}_shape"], [name],
                                  value=numpy_helper.from_array(np.zeros(1, dtype=dtype))))
    return name


def _const(nodes: list[onnx.NodeProto], name: str, value: np.ndarray) -> str:
    nodes.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name)))
    return name


# -- running -----------------------------------------------------------------------------------

def random_feeds(analysis: Analysis, seed: int, batch_delta: int = 0) -> Feeds:
    """Inputs of the analysed shapes (a symbolic first axis grown by `batch_delta`): normal floats;
    integer ids below the size of the table a Gather reads them from (else 0/1); random booleans.
    """
    source: OnnxSource = analysis.source
    rng = np.random.default_rng(seed)
    graph = analysis.graph
    feeds: Feeds = {}
    for name, shape in source.input_shapes.items():
        if batch_delta and 0 in source.symbolic.get(name, {}):
            shape = (shape[0] + batch_delta, *shape[1:])
        dtype = np.dtype(graph.value(name).dtype)
        if dtype.kind == "f":
            feeds[name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[name] = rng.random(shape) < 0.5
        else:
            bound = 2
            for op, port in graph.consumers(name):
                if op.op == "onnx::Gather" and port == "indices":
                    data = graph.inputs(op)[0][1]
                    bound = max(1, data.shape[int(op.attrs.get("axis", 0) or 0) % data.rank])
            feeds[name] = rng.integers(0, bound, size=shape).astype(dtype)
    return feeds


class Runner:
    """An onnxruntime session over a ModelProto (spilled to a temp dir when it needs external data)."""

    def __init__(self, model: onnx.ModelProto, base_dir: str | None, threads: int = 0) -> None:
        import onnxruntime as ort

        from prunec.rewrite.onnx_save import save_model

        opts = ort.SessionOptions()
        opts.log_severity_level = 4
        if threads:
            opts.intra_op_num_threads = threads
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        external = any(onnx.external_data_helper.uses_external_data(t) for t in model.graph.initializer)
        if external or model.ByteSize() > 1_800_000_000:
            self._tmp = tempfile.TemporaryDirectory(prefix="prunec-ort-")
            path = os.path.join(self._tmp.name, "model.onnx")
            save_model(model, path, base_dir=base_dir, external_data=True)
            self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        else:
            self.session = ort.InferenceSession(model.SerializeToString(), opts,
                                                providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Outputs for `feeds` (inputs the model does not take are dropped)."""
        names = {i.name for i in self.session.get_inputs()}
        return self.session.run(None, {k: v for k, v in feeds.items() if k in names})

    def close(self) -> None:
        """Drop the session and its temporary files."""
        self.session = None  # type: ignore[assignment]
        if self._tmp is not None:
            self._tmp.cleanup()


def _loads(model: onnx.ModelProto, base_dir: str | None) -> bool:
    """Whether onnxruntime can load `model` (tells a bad reference from a bad original)."""
    try:
        Runner(model, base_dir).close()
    except Exception:  # any load failure: the original is at fault
        return False
    return True


def compare(got: Sequence[np.ndarray], want: Sequence[np.ndarray], names: Sequence[str]) -> tuple[float, str, str]:
    """Worst relative difference max|got - want| / max|want| over outputs: (value, where, problem)."""
    worst, where = 0.0, "-"
    for name, g, w in zip(names, got, want):
        label = f"output '{name}' {tuple(w.shape)}"
        if g.shape != w.shape:
            return float("inf"), label, f"pruned output has shape {tuple(g.shape)}"
        gf, wf = np.asarray(g, dtype=np.float64), np.asarray(w, dtype=np.float64)
        if not np.array_equal(~np.isfinite(gf), ~np.isfinite(wf)):
            return float("inf"), label, "non-finite values differ from the reference"
        gf, wf = np.nan_to_num(gf), np.nan_to_num(wf)
        if w.size == 0:
            continue
        scale = float(np.abs(wf).max())
        diff = float(np.abs(gf - wf).max())
        rel = diff / scale if scale > 1e-12 else diff
        if rel > worst:
            worst, where = rel, label
    return worst, where, ""


def verify_pruned(analysis: Analysis, pruned: onnx.ModelProto, keep: np.ndarray, removed: Sequence[RemovedGroup],
                  feeds: Sequence[Feeds] = (), *, seeds: int = 2, tolerance: float = 1e-4) -> VerificationReport:
    """Run the pruned model and the reference in onnxruntime on the given and `seeds` random inputs;
    raise VerificationError if they differ by more than `tolerance` (relative).
    """
    source: OnnxSource = analysis.source
    reference, wrapped = build_reference(analysis, keep, removed)
    ref_name = "zeroed original (the contract)" if not wrapped else (
        f"zeroed original with removal evaluated at {wrapped} channel-mixing node(s)")
    inputs = [*feeds, *(random_feeds(analysis, s + 1) for s in range(seeds))]
    optional: list[Feeds] = []
    if any(0 in source.symbolic.get(n, {}) for n in source.input_shapes):
        optional.append(random_feeds(analysis, seeds + 1, batch_delta=1))  # the dynamic batch must survive
    base = source.tensors.base_dir
    try:
        run_ref = Runner(reference, base)
    except Exception as exc:
        first = str(exc).splitlines()[0]
        if wrapped or _loads(source.model, base):  # the reference prunec built is at fault
            raise OnnxModelError(f"onnxruntime cannot load the verification reference ({ref_name}): "
                                 f"{first}. The original model loads, so this is a prunec limitation; please "
                                 "report it with the model. Pass ignore= for the layers involved, or "
                                 "verify=False") from exc
        raise OnnxModelError(f"onnxruntime cannot load the original model, so it cannot be verified: "
                             f"{first}. Pass verify=False, or export the model with an opset and ops this "
                             "onnxruntime supports") from exc
    try:
        run_pruned = Runner(pruned, base)
    except Exception as exc:  # a model onnxruntime refuses fails verification
        report = VerificationReport(False, float("inf"), "load", len(inputs), ref_name, tolerance,
                                    f"onnxruntime cannot load the pruned model: {str(exc).splitlines()[0]}")
        run_ref.close()
        raise_if_failed(report, "the pruned ONNX model")
        return report
    worst, where, problem, checked = 0.0, "-", "", 0
    try:
        for feed in [*inputs, *optional]:
            try:
                want = run_ref(feed)
            except Exception:  # the original runs only at the analysed sizes: skip those
                if any(feed is o for o in optional):
                    continue
                raise
            checked += 1
            try:
                got = run_pruned(feed)
            except Exception as exc:  # a pruned model that raises fails verification
                shapes = ", ".join(f"{k}{tuple(v.shape)}" for k, v in feed.items())
                worst, where, problem = float("inf"), "run", (f"onnxruntime failed on inputs {shapes}: "
                                                              f"{str(exc).splitlines()[0]}")
                break
            rel, label, text = compare(got, want, run_ref.outputs)
            if rel > worst or (text and not problem):
                worst, where, problem = max(rel, worst), label, text or problem
    finally:
        run_pruned.close()
        run_ref.close()
    report = VerificationReport(worst <= tolerance, worst, where, checked, ref_name, tolerance, problem)
    raise_if_failed(report, "the pruned ONNX model")
    return report
