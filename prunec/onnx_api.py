"""The one-call API for ONNX models: `analyze`, `prune`, and the result that saves itself.

`prunec.analyze` / `prunec.prune` delegate here when given a path to an .onnx file or an
`onnx.ModelProto`. The analysis is the same as for torch (same IR, same coupling solve, same
groups); scoring reads initializers, selection is the built-in uniform pass's plan, the rewrite
is `prunec.rewrite.to_onnx`, and verification runs both files in onnxruntime.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from prunec.analysis.atoms import AtomTable
from prunec.analysis.coupling import analyse_couplings
from prunec.analysis.groups import RemovedGroup, build_groups
from prunec.analysis.result import Analysis
from prunec.errors import InputError, PruneError, TargetError
from prunec.frontends.onnx_graph import OnnxSource, load, match_nodes
from prunec.report import PruneReport, build_report
from prunec.rules.registry import RULES, RuleRegistry
from prunec.targets import Target
from prunec.verify import VerificationReport

OnnxLike = Any
"""A path to an .onnx file (str or os.PathLike) or an onnx.ModelProto."""
Progress = Callable[[str], None]


def is_onnx_model(obj: object) -> bool:
    """Whether `obj` is something the ONNX path takes: a path or an onnx.ModelProto."""
    return isinstance(obj, (str, os.PathLike, onnx.ModelProto))


def input_shapes_from(example_inputs: Any) -> tuple[dict[str, tuple[int, ...]] | None, list[dict[str, np.ndarray]]]:
    """Shapes and feeds from ONNX example inputs: None, {name: array}, or a tuple of arrays (in
    the order of the graph inputs; resolved later).
    """
    if example_inputs is None:
        return None, []
    if isinstance(example_inputs, Mapping):
        feeds = {str(k): _as_numpy(v) for k, v in example_inputs.items()}
        return {k: tuple(v.shape) for k, v in feeds.items()}, [feeds]
    raise InputError("example inputs of an ONNX model must be None or a dict {input name: array}; got "
                     f"{type(example_inputs).__name__}")


def _as_numpy(v: Any) -> np.ndarray:
    if hasattr(v, "detach"):
        return v.detach().cpu().numpy()
    return np.asarray(v)


def reject_torch_options(*, inplace: bool = False, output: str = "auto", pipeline: Any = None,
                         calibration: Sequence[Any] = (), loss_fn: Any = None, tracer: str = "auto") -> None:
    """Raise InputError for prune() options that only apply to torch models."""
    used = [name for name, given in (("inplace", inplace), ("output", output != "auto"),
                                     ("pipeline", pipeline is not None), ("calibration", bool(calibration)),
                                     ("loss_fn", loss_fn is not None), ("tracer", tracer != "auto")) if given]
    if used:
        raise InputError(f"{', '.join(used)} apply to torch models only; an ONNX model is pruned with the "
                         "built-in score/select/rewrite/verify steps (see prunec.onnx_api.prune)")


def analyze(model: OnnxLike, example_inputs: Any = None, *, input_shapes: Mapping[str, Sequence[int]] | None = None, batch: int = 1,
            ignore: Iterable[str] = (), strict: bool = False, rules: RuleRegistry | None = None) -> Analysis:
    """Load an ONNX model and find its zero-invariant groups of coupled initializer slices.

    Args:
        model: path to an .onnx file, or an onnx.ModelProto.
        example_inputs: None or {input name: array}: fixes the concrete input shapes.
        input_shapes: concrete shape per graph input (needed for symbolic dims other than batch).
        batch: size of a symbolic first axis of the inputs.
        ignore: node names, globs ('/fc/*') or initializer names whose output channels must stay.
        strict: raise UnsupportedOpError instead of pinning nodes that have no rule.
        rules: a rule registry (default: the global one with the built-in ONNX rules).

    Returns:
        An Analysis whose groups' members are Slice(initializer name, dim, indices).

    """
    import prunec.analysis.onnx_costs  # registers MACs of ONNX attention, Einsum, Gemm
    import prunec.passes  # registers the built-in passes and criteria
    import prunec.rules  # noqa: F401  (registers the built-in op rules)
    from prunec.plugins import load_plugins

    load_plugins()
    shapes, _ = input_shapes_from(example_inputs)
    if shapes is not None:
        input_shapes = {**dict(input_shapes or {}), **shapes}
    source = load(model, input_shapes=input_shapes, batch=batch)
    graph = source.graph
    table = AtomTable(graph)
    pins: list[tuple[np.ndarray, str]] = []
    for pattern, ops in match_nodes(source, list(ignore)).items():
        for name in ops:
            for v in graph.outputs(graph.op(name)):
                pins += [(table.atoms(s), f"output of ignored node '{name}' ({pattern})") for s in table.slots_of(v)]
    coupling = analyse_couplings(graph, rules or RULES, strict=strict, extra_pins=pins, table=table)
    groups, pinned_params = build_groups(graph, coupling)
    return Analysis(graph, tuple(groups), tuple(coupling.pinned), tuple(pinned_params), coupling, source)


def count_params(model: onnx.ModelProto) -> int:
    """Parameter elements of an ONNX model: floating-point initializers of rank >= 1 that some node
    (or a graph output) reads.
    """
    from prunec.frontends.onnx_tensors import FLOAT_TYPES

    used = {name for n in model.graph.node for name in n.input} | {o.name for o in model.graph.output}
    return sum(int(np.prod(t.dims, dtype=np.int64)) for t in model.graph.initializer
               if t.data_type in FLOAT_TYPES and len(t.dims) >= 1 and t.name in used)


@dataclass(frozen=True, eq=False)
class OnnxPruneResult:
    """The pruned ONNX model, what was removed (original numbering), the report, the check."""

    model: onnx.ModelProto
    """The pruned model. Initializers that pruning left unchanged may still refer to the original's
    external data file; `save()` writes a self-contained copy."""
    removed: tuple[RemovedGroup, ...]
    report: PruneReport
    analysis: Analysis
    verification: VerificationReport | None

    @property
    def output_kind(self) -> str:
        """Always 'onnx'."""
        return self.report.output_kind

    def save(self, path: str | os.PathLike[str], *, external_data: bool | None = None) -> None:
        """Write the pruned model to `path` (all or nothing: no partial file is left on failure).

        External data (`<file>.data` next to it) is used when the model is larger than 2 GB, when
        the original used it, or when `external_data=True`.
        """
        from prunec.rewrite.onnx_save import save_model

        source: OnnxSource = self.analysis.source
        save_model(self.model, os.fspath(path), base_dir=_base_dir(source), external_data=external_data)


def _base_dir(source: OnnxSource) -> str | None:
    return source.tensors.base_dir


def score_groups(analysis: Analysis, criterion: Any = "l2") -> dict[int, np.ndarray]:
    """Importance of every channel of every group, from the initializers (weight-only criteria)."""
    import torch

    from prunec.scoring import SliceData, get_criterion

    crit = get_criterion(criterion)
    if crit.needs:
        needs = ", ".join(sorted(n.value for n in crit.needs))
        raise PruneError(f"criterion {crit.name!r} needs {needs}, which an ONNX file cannot provide; use a "
                         "weight-only criterion such as 'l2' or 'l1'")
    source: OnnxSource = analysis.source
    scores: dict[int, np.ndarray] = {}
    for group in analysis.groups:
        member_scores: list[np.ndarray] = []
        for member, chan_of in zip(group.members, group.channel_of):
            values = source.tensors.array(member.param)
            rows = np.take(values, np.asarray(member.indices, dtype=np.int64), axis=member.dim)
            rows = np.moveaxis(rows, member.dim, 0).reshape(len(member.indices), -1).astype(np.float32)
            data = SliceData(member, torch.from_numpy(np.ascontiguousarray(rows)), False)
            s = crit.score_slice(data).detach().double().cpu().numpy().reshape(-1)
            member_scores.append(np.bincount(chan_of, weights=s, minlength=group.channel_count))
        scores[group.id] = np.asarray(crit.score_group(group, member_scores or [np.ones(group.channel_count)]))
    return scores


def plan(analysis: Analysis, scores: Mapping[int, np.ndarray], target: Target, round_to: int | None
         ) -> tuple[dict[int, tuple[int, ...]], float]:
    """Channels to remove per group (the built-in uniform selection) and the ratio used."""
    from prunec.passes import plan_uniform, search_ratio

    if target.kind == "latency":
        raise TargetError("latency targets are not supported for ONNX models; use macs=, params= or ratio=")
    ratio = target.value if target.kind == "ratio" else search_ratio(analysis, scores, target, round_to, 1)
    return plan_uniform(analysis, scores, ratio, round_to, 1), ratio


def prune(model: OnnxLike, example_inputs: Any = None, *, ratio: float | None = None,
          target: str | Target | None = None, criterion: Any = "l2", ignore: Iterable[str] = (),
          round_to: int | None = None, strict: bool = False, verify: bool = True, tolerance: float = 1e-4,
          input_shapes: Mapping[str, Sequence[int]] | None = None, batch: int = 1, seeds: int = 2,
          rules: RuleRegistry | None = None, progress: Progress | None = None) -> OnnxPruneResult:
    """Prune an ONNX model into a structurally smaller one and verify it with onnxruntime.

    Args:
        model: path to an .onnx file, or an onnx.ModelProto.
        example_inputs: None (random inputs of the resolved shapes) or {input name: array}; they fix
            the concrete shapes and are checked by verification.
        ratio: remove this fraction of every prunable group's channels.
        target: 'macs=0.5' or 'params=0.5' (keep at most this share) instead of `ratio`.
        criterion: a weight-only criterion name ('l2', 'l1') or Criterion instance.
        ignore: node names, globs or initializer names whose output channels must stay.
        round_to: keep channel counts multiples of this.
        strict: raise UnsupportedOpError for nodes without a rule instead of pinning them.
        verify: run the pruned model against the zeroed original in onnxruntime (VerificationError
            on mismatch).
        tolerance: maximum relative output difference allowed by verification.
        input_shapes: concrete shape per graph input (see `analyze`).
        batch: size of a symbolic first axis of the inputs.
        seeds: number of fresh random inputs verification checks besides the example.
        rules: a rule registry (default: the global one).
        progress: called with the name of each step as it starts.

    Returns:
        OnnxPruneResult with `.model` (onnx.ModelProto), `.removed`, `.report`, `.verification`.

    """
    from prunec.api import _target_from
    from prunec.onnx_verify import verify_pruned
    from prunec.rewrite.to_onnx import rewrite_onnx

    step = progress or (lambda _name: None)
    tgt = _target_from(ratio, target)
    if round_to is not None and (not isinstance(round_to, int) or round_to < 1):
        raise TargetError(f"round_to must be a positive integer, got {round_to!r}")
    _, feeds = input_shapes_from(example_inputs)
    step("analyse")
    analysis = analyze(model, example_inputs, input_shapes=input_shapes, batch=batch, ignore=ignore, strict=strict,
                       rules=rules)
    check_values(analysis.source, feeds, analysis.groups)
    step("score")
    scores = score_groups(analysis, criterion)
    step("select")
    masks, used_ratio = plan(analysis, scores, tgt, round_to)
    keep = analysis.keep_mask(masks)
    removed = tuple(analysis.group(gid).select(ch) for gid, ch in sorted(masks.items()) if ch)
    step("rewrite")
    pruned, notes = rewrite_onnx(analysis, keep)
    report_v = None
    if verify:
        step("verify")
        report_v = verify_pruned(analysis, pruned, keep, removed, feeds, seeds=seeds, tolerance=tolerance)
    report = _report(analysis, pruned, keep, removed, report_v, (f"uniform ratio {used_ratio:.4f} per group", *notes))
    return OnnxPruneResult(pruned, removed, report, analysis, report_v)


def check_values(source: OnnxSource, feeds: Sequence[Mapping[str, np.ndarray]],
                 analysis_groups: Sequence[Any] = ()) -> None:
    """Example inputs of the declared dtypes, and finite prunable initializers (the members of
    `analysis_groups`): scores and verification need both."""
    from onnx.helper import tensor_dtype_to_np_dtype

    declared = {vi.name: vi.type.tensor_type.elem_type for vi in source.model.graph.input}
    for feed in feeds:
        for name, value in feed.items():
            want = declared.get(name)
            expected = np.dtype(tensor_dtype_to_np_dtype(want)) if want else None
            if expected is not None and np.dtype(value.dtype) != expected:
                raise InputError(f"example input {name!r} is {np.dtype(value.dtype).name}, but the model "
                                 f"declares {expected.name}; convert it (e.g. .astype)")
            if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
                raise InputError(f"example input {name!r} holds NaN or infinite values; pass finite inputs")
    members = {m.param for g in analysis_groups for m in g.members}
    for t in source.model.graph.initializer:
        if t.name not in members or not source.tensors.is_float(t.name):
            continue  # constants may hold -inf on purpose (attention masks)
        values = source.tensors.array(t.name)
        if not np.isfinite(values).all():
            nan = int(np.isnan(values).sum())
            inf = int((~np.isfinite(values)).sum()) - nan
            raise InputError(f"initializer {t.name!r} holds {nan} NaN and {inf} infinite value(s); channel "
                             "scores and verification need finite numbers. Repair the model before pruning.")


def _report(analysis: Analysis, pruned: onnx.ModelProto, keep: np.ndarray, removed: tuple[RemovedGroup, ...],
            verification: VerificationReport | None, notes: tuple[str, ...]) -> PruneReport:
    source: OnnxSource = analysis.source
    title = os.path.basename(source.path) if source.path else (source.model.graph.name or "onnx model")
    return build_report(analysis, keep, removed, model=title, params_before=count_params(source.model),
                        params_after=count_params(pruned), output_kind="onnx", verification=verification,
                        notes=notes, shape_of=source.tensors.shape)
