"""Least-squares refit: after channels are chosen, refit the layers that lose input channels.

Removing input channel c of a layer drops the term W[:, c] x_c from its output. The remaining
channels are usually correlated with the removed ones, so a different W over the kept channels
recovers much of the original output. For each such layer, in graph order, the pass solves

    W' = argmin  sum over calibration positions of || y_dense - W' x_kept ||^2
                 + damping * mean(diag(Gram)) * || W' - W_dense ||^2

where y_dense is the layer's output in the dense original and x_kept is its input in the model
pruned so far (earlier refits included), so errors do not pile up layer after layer (the
sequential scheme of OBS-style one-shot pruners). The refit layers are rows of data: an op key and
how to lay its input out as (positions, columns) matching the flattened weight.

The working model's weights change: the pruned model then equals the zeroed *refitted* model,
which is what verification checks, and the report says so.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch.nn import functional as F

from prunec.activations import ShapeTraces, capture_input, traced_module
from prunec.analysis.result import Analysis
from prunec.errors import PruneError
from prunec.inputs import ExampleInputs
from prunec.ir.graph import OpNode
from prunec.pipeline import Artifact, Pass, PassResult, PruneState, register_pass
from prunec.reference import traced_reference

Unfold = Callable[[torch.Tensor, OpNode, tuple[int, ...]], torch.Tensor | None]
"""(layer input, op, weight shape) -> (positions, columns) in the flattened weight's column order."""


def _tensor(model: torch.nn.Module, name: str) -> torch.Tensor:
    """A parameter or buffer by its state_dict name."""
    try:
        return model.get_parameter(name)
    except AttributeError:
        return model.get_buffer(name)


def _pair(v: Any, n: int) -> tuple[int, ...]:
    if isinstance(v, int):
        return (v,) * n
    t = tuple(int(x) for x in v)
    return t * n if len(t) == 1 else t


def _unfold_linear(x: torch.Tensor, op: OpNode, w: tuple[int, ...]) -> torch.Tensor:
    return x.reshape(-1, x.shape[-1])  # y = x @ W.T + b


def _unfold_conv(x: torch.Tensor, op: OpNode, w: tuple[int, ...]) -> torch.Tensor | None:
    spatial = len(w) - 2
    if int(op.attrs.get("groups", 1) or 1) != 1 or spatial not in (1, 2):
        return None  # grouped convs mix no channels across groups: nothing to refit
    padding = op.attrs.get("padding", 0)
    if isinstance(padding, str):
        return None
    kernel, stride = w[2:], _pair(op.attrs.get("stride", 1), spatial)
    dilation, pad = _pair(op.attrs.get("dilation", 1), spatial), _pair(padding, spatial)
    if spatial == 1:  # a 1-d conv is a 2-d conv over a height of one
        x, kernel, stride = x.unsqueeze(2), (1, *kernel), (1, *stride)
        dilation, pad = (1, *dilation), (0, *pad)
    cols = F.unfold(x, kernel, dilation=dilation, padding=pad, stride=stride)  # (N, C*k, L)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


REFIT: dict[str, Unfold] = {
    "aten::linear": _unfold_linear,  # y[n, o] = sum_i W[o, i] x[n, i] + b[o]
    "aten::conv2d": _unfold_conv,  # y[n, o, p] = sum_(c, k) W[o, c, k] x[n, c, p + k] + b[o]
    "aten::conv1d": _unfold_conv,
}


@dataclass
class _Layer:
    op: OpNode
    weight: str
    bias: str | None
    kept: np.ndarray
    """Kept input channels (original numbering) of the weight's axis 1."""


def _layers(analysis: Analysis, keep: np.ndarray) -> list[_Layer]:
    changes = analysis.state_changes(keep)
    graph = analysis.graph
    out = []
    for op in graph.ops():
        if op.op not in REFIT:
            continue
        ins = dict(graph.inputs(op))
        w, b = ins.get("weight"), ins.get("bias")
        if w is None or not w.is_state or 1 not in changes.get(str(w.param), {}):
            continue
        bias = str(b.param) if b is not None and b.is_state else None
        out.append(_Layer(op, str(w.param), bias, changes[str(w.param)][1]))
    return out


def _capture(gm: torch.fx.GraphModule, op: str, batch: ExampleInputs) -> torch.Tensor:
    x = capture_input(gm, op, "input", batch)
    if x is None:
        raise PruneError(f"reconstruct: op '{op}' did not run on calibration batch {batch.describe()}; "
                         "the model's control flow differs from the traced program")
    return x


def _columns(kept: np.ndarray, w_shape: tuple[int, ...]) -> np.ndarray:
    per = int(np.prod(w_shape[2:], dtype=np.int64)) if len(w_shape) > 2 else 1
    return (kept[:, None] * per + np.arange(per)[None, :]).reshape(-1)


@register_pass("reconstruct")
@dataclass(frozen=True)
class ReconstructPass(Pass):
    """Refit every conv/linear that loses input channels by least squares on calibration data."""

    requires: ClassVar = frozenset({Artifact.ANALYSIS, Artifact.MASKS})
    provides: ClassVar = frozenset()

    damping: float = 0.01
    """Ridge term, as a fraction of the mean diagonal of the kept inputs' Gram matrix."""

    def run(self, state: PruneState) -> PassResult:
        analysis, masks = state.analysis, state.masks
        assert analysis is not None and masks is not None  # guaranteed by `requires`
        if not state.calibration:
            raise PruneError("pass 'reconstruct' needs calibration batches: pass calibration=[inputs, "
                             "...] to prunec.prune (a few batches of real inputs)")
        keep = analysis.keep_mask(masks)
        removed = [analysis.group(gid).select(ch) for gid, ch in masks.items() if ch]
        layers = _layers(analysis, keep)
        if not layers:
            return PassResult(state.note("reconstruct: no conv/linear loses input channels"), changed=False)
        traces = ShapeTraces(analysis, state.model)
        # the dense original, with its own copy of the weights (the working model changes below)
        dense = {i: copy.deepcopy(traced_module(traces.for_batch(b)))
                 for i, b in enumerate(state.calibration)}
        self._zero_removed(state, removed)
        before, after = [], []
        for layer in layers:
            err = self._refit(state, traces, dense, layer, keep, removed)
            if err is not None:
                before.append(err[0])
                after.append(err[1])
        note = (f"reconstruct: refitted {len(before)} layer(s) on {len(state.calibration)} calibration "
                f"batch(es); mean relative output error {np.mean(before):.3g} -> {np.mean(after):.3g}. "
                "The pruned model equals the zeroed refitted model, not the zeroed original")
        return PassResult(state.note(note))

    @staticmethod
    def _zero_removed(state: PruneState, removed: list[Any]) -> None:
        with torch.no_grad():
            for group in removed:
                for s in group.members:
                    t = _tensor(state.model, s.param)
                    t.index_fill_(s.dim, torch.as_tensor(s.indices, dtype=torch.long, device=t.device), 0)

    def _refit(self, state: PruneState, traces: ShapeTraces, dense: dict[int, torch.fx.GraphModule],
               layer: _Layer, keep: np.ndarray, removed: list[Any]) -> tuple[float, float] | None:
        weight = _tensor(state.model, layer.weight)
        w_shape = tuple(weight.shape)
        unfold = REFIT[layer.op.op]
        w_dense = _tensor(dense[0], layer.weight).detach().double().reshape(w_shape[0], -1)
        b_dense = _tensor(dense[0], layer.bias).detach().double() if layer.bias else None
        cols = torch.as_tensor(_columns(layer.kept, w_shape), dtype=torch.long, device=weight.device)
        gram = cross = None
        energy = 0.0
        refs: dict[int, torch.fx.GraphModule] = {}
        for i, batch in enumerate(state.calibration):
            analysis = traces.for_batch(batch)
            if id(analysis) not in refs:  # one reference per input shape, reflecting earlier refits
                refs[id(analysis)] = traced_reference(analysis, keep, removed)[0]
            ref = refs[id(analysis)]
            x_now = unfold(_capture(ref, layer.op.name, batch), layer.op, w_shape)
            x_old = unfold(_capture(dense[i], layer.op.name, batch), layer.op, w_shape)
            if x_now is None or x_old is None:
                return None
            u = x_now.double()[:, cols]
            if layer.bias:
                u = torch.cat([u, torch.ones(u.shape[0], 1, dtype=u.dtype, device=u.device)], dim=1)
            y = x_old.double() @ w_dense.T + (b_dense if b_dense is not None else 0.0)
            gram = u.T @ u if gram is None else gram + u.T @ u
            cross = y.T @ u if cross is None else cross + y.T @ u
            energy += float(y.pow(2).sum())
        assert gram is not None and cross is not None  # calibration is not empty
        old = w_dense[:, cols]
        if layer.bias:
            old = torch.cat([old, b_dense[:, None]], dim=1)  # type: ignore[index]
        # ridge towards the dense weights (not towards zero): a well-determined direction follows
        # the data, a poorly determined one keeps its original value
        damp = self.damping * float(gram.diagonal().mean()) + 1e-12
        eye = torch.eye(len(gram), dtype=gram.dtype, device=gram.device)
        solution = torch.linalg.solve(gram + damp * eye, (cross + damp * old).T).T
        err_before = self._error(energy, cross, gram, old)
        err_after = self._error(energy, cross, gram, solution)
        with torch.no_grad():
            flat = torch.zeros(w_shape[0], int(np.prod(w_shape[1:])), dtype=torch.float64,
                               device=weight.device)
            flat[:, cols] = solution[:, : len(cols)]
            weight.copy_(flat.reshape(w_shape).to(weight.dtype))
            if layer.bias:
                bias = _tensor(state.model, layer.bias)
                bias.copy_(solution[:, -1].to(bias.dtype))
        return err_before, err_after

    @staticmethod
    def _error(energy: float, cross: torch.Tensor, gram: torch.Tensor, w: torch.Tensor) -> float:
        """||Y - U W^T||^2 / ||Y||^2 from the accumulated statistics."""
        sq = energy - 2.0 * float((w * cross).sum()) + float(((w @ gram) * w).sum())
        return max(sq, 0.0) / energy if energy > 0 else 0.0
