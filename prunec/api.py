"""The one-call API: `analyze` and `prune`."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import difflib
import gc
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from prunec.analysis.coupling import analyse_couplings
from prunec.analysis.groups import RemovedGroup, build_groups
from prunec.analysis.kinds import check_attention, check_kinds, classify, role_atoms
from prunec.analysis.result import Analysis
from prunec.errors import InputError, TargetError
from prunec.frontends.torch_export import check_devices, check_tracer, trace
from prunec.inputs import ExampleInputs, ExampleInputsLike
from prunec.persistence import state_entries
from prunec.pipeline import Artifact, Pass, PassManager, PruneState, parse_pipeline
from prunec.progress import Progress, ProgressLike
from prunec.report import PruneReport, build_report
from prunec.rules.registry import RULES, RuleRegistry
from prunec.rules.torch_attention import HEAD_DIM, HEADS
from prunec.targets import Target
from prunec.transaction import restore_on_error
from prunec.verify import VerificationReport

OUTPUT_KINDS = ("auto", "module", "graph_module")
ANALYSIS_STAGES = 3
"""trace, couple, group."""


def _load_builtins() -> None:
    import prunec.passes  # noqa: F401  (registers built-in passes and criteria)
    import prunec.rules  # noqa: F401  (registers built-in op rules)
    from prunec.plugins import load_plugins

    load_plugins()


def _resolve_ignore(model: nn.Module, ignore: Iterable[str | nn.Module], arg: str = "ignore") -> list[str]:
    ignore = list(ignore)
    if not ignore:
        return []
    names = {id(m): n for n, m in model.named_modules()}
    all_names = [n for n, _ in model.named_modules() if n]
    paths: list[str] = []
    for item in ignore:
        if isinstance(item, nn.Module):
            if id(item) not in names:
                raise InputError(f"{arg}= holds a {type(item).__name__} that is not a submodule of the model")
            paths.append(names[id(item)])
        elif isinstance(item, str):
            if item not in all_names:
                close = difflib.get_close_matches(item, all_names, n=3)
                hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
                raise InputError(f"{arg}= names module {item!r}, which the model does not have{hint}")
            paths.append(item)
        else:
            raise InputError(f"{arg}= takes module names or modules, got {type(item).__name__}")
    return paths


def _ignore_pins(graph: Any, table_atoms: Callable[[str], list[np.ndarray]], paths: Sequence[str]
                 ) -> list[tuple[np.ndarray, str]]:
    pins: list[tuple[np.ndarray, str]] = []
    for path in paths:
        inside = {op.name for op in graph.ops()
                  if op.origin is not None and (op.origin == path or op.origin.startswith(path + "."))}
        for op_name in inside:
            for v in graph.outputs(graph.op(op_name)):
                leaves = v.name in graph.graph_outputs or any(
                    c.name not in inside for c, _ in graph.consumers(v))
                if leaves:
                    pins += [(a, f"output of ignored module '{path}'") for a in table_atoms(v.name)]
    return pins


def analyze(model: nn.Module, example_inputs: ExampleInputsLike = None, *, ignore: Iterable[str | nn.Module] = (),
            strict: bool = False, rules: RuleRegistry | None = None, attention: str = "heads",
            tracer: str = "auto", progress: ProgressLike | Progress = None) -> Analysis:
    """Trace `model` and find its zero-invariant groups of coupled parameter slices.

    Args:
        model: the model; it is not modified. A path to an .onnx file or an onnx.ModelProto is
            analysed by `prunec.onnx_api.analyze` (example_inputs: None or {input name: array}).
            Parameters may live on the `meta` device (analysis needs shapes only).
        example_inputs: a tensor, a tuple of positional tensors or a dict of keyword tensors.
        ignore: modules (or names) whose output channels must be kept.
        strict: raise UnsupportedOpError instead of pinning ops that have no rule.
        rules: a rule registry (default: the global one with the built-in ATen rules).
        attention: 'heads' (groups of whole attention heads) or 'head_dim' (groups of dimensions
            inside every head), where a reshape allows either.
        tracer: how a torch model is traced: 'auto' (record one eager forward, falling back to
            torch.export when the recording is not faithful), 'record' or 'export'.
        progress: True for a progress bar, or a callable receiving a ProgressEvent per stage.

    Returns:
        An Analysis: `.groups` (each with `.members` as Slice(param, dim, indices) and `.kind`),
        `.pinned`.
    """
    from prunec.onnx_api import is_onnx_model

    if is_onnx_model(model):
        from prunec import onnx_api

        _reject_group_selection(attention, None, False)
        onnx_api.reject_torch_options(tracer=tracer)
        return onnx_api.analyze(model, example_inputs, ignore=ignore, strict=strict, rules=rules)  # type: ignore[arg-type]
    _load_builtins()
    check_attention(attention)
    reporter = progress if isinstance(progress, Progress) else Progress(progress, ANALYSIS_STAGES)
    try:
        analysis = _analyze(model, example_inputs, ignore, strict, rules, attention, reporter, tracer)
    finally:
        if reporter is not progress:
            reporter.close()
    if reporter is not progress:
        reporter.done()
    return analysis


def _analyze(model: nn.Module, example_inputs: ExampleInputsLike, ignore: Iterable[str | nn.Module],
             strict: bool, rules: RuleRegistry | None, attention: str, reporter: Progress,
             tracer: str) -> Analysis:
    inputs = ExampleInputs.from_user(example_inputs)
    paths = _resolve_ignore(model, ignore)
    with _gc_paused():
        return _analyze_torch(model, inputs, paths, strict, rules, tracer, attention, reporter)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Python's cycle collector rescans every live object as tracing allocates tens of thousands of
    nodes, which makes analysis time grow faster than the graph; nothing here forms garbage cycles
    worth collecting mid-analysis, so collection waits until it is done."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _analyze_torch(model: nn.Module, inputs: ExampleInputs, paths: list[str], strict: bool,
                   rules: RuleRegistry | None, tracer: str, attention: str, reporter: Progress) -> Analysis:
    reporter.stage("trace")
    traced = trace(model, inputs, tracer=tracer)
    reporter.stage("couple")
    graph = traced.graph
    from prunec.analysis.atoms import AtomTable

    table = AtomTable(graph)

    def atoms_of(value: str) -> list[np.ndarray]:
        return [table.atoms(s) for s in table.slots_of(graph.value(value))]

    registry = rules or RULES
    roles = role_atoms(graph, table, registry)
    avoid = roles[HEAD_DIM] if attention == HEADS else roles[HEADS]
    coupling = analyse_couplings(graph, registry, strict=strict,
                                 extra_pins=_ignore_pins(graph, atoms_of, paths), avoid=avoid, table=table)
    reporter.stage("group")
    groups, pinned_params = build_groups(graph, coupling)
    groups = classify(groups, coupling, roles)
    return Analysis(graph, tuple(groups), tuple(coupling.pinned), tuple(pinned_params), coupling, traced,
                    ignored=tuple(paths), attention=attention)


def _reject_group_selection(attention: str, kinds: Any, zero_invariant_only: bool) -> None:
    """ONNX models have no group kinds yet: refuse the options instead of ignoring them."""
    used = [name for name, on in (("attention=", attention != "heads"), ("kinds=", kinds is not None),
                                  ("zero_invariant_only=", zero_invariant_only)) if on]
    if used:
        raise InputError(f"{', '.join(used)} apply to PyTorch models only; for an ONNX model leave them out "
                         "(or prune the PyTorch model and export it)")


def _restrict(analysis: Analysis, kinds: tuple[str, ...] | None, zero_invariant_only: bool) -> Analysis:
    """The analysis with only the groups that may be pruned."""
    if kinds is None and not zero_invariant_only:
        return analysis
    keep = tuple(g for g in analysis.groups if (kinds is None or g.kind in kinds)
                 and (g.zero_invariant or not zero_invariant_only))
    return dataclasses.replace(analysis, groups=keep)


@dataclass(frozen=True, eq=False)
class PruneResult:
    """The pruned model, what was removed (original numbering) and the report."""

    model: nn.Module
    removed: tuple[RemovedGroup, ...]
    report: PruneReport
    analysis: Analysis
    verification: VerificationReport | None
    steps: tuple[PruneResult, ...] = ()
    """For iterative pruning (steps > 1): each step's own result; `removed` then spans all steps."""
    source_state: tuple[tuple[str, tuple[int, ...], str], ...] = ()
    """(name, shape, dtype) of every state_dict entry of the original model (for saved plans)."""

    @property
    def output_kind(self) -> str:
        """'module' (same classes as the original) or 'graph_module'."""
        return self.report.output_kind


def count_params(model: nn.Module) -> int:
    """Number of parameter elements (tied parameters counted once)."""
    return sum(p.numel() for p in model.parameters())


def _target_from(ratio: float | None, target: str | Target | None) -> Target:
    if ratio is not None and target is not None:
        raise TargetError(f"give either ratio= or target=, not both (got ratio={ratio}, target={target!r})")
    if ratio is None and target is None:
        raise TargetError("nothing to prune towards: pass ratio=0.5 (remove half of every group's channels) "
                          "or target='macs=0.5' / 'params=0.5'")
    if ratio is not None:
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
            raise TargetError(f"ratio must be a number in [0, 1), got {ratio!r}")
        return Target("ratio", float(ratio))
    return Target.parse(target)  # type: ignore[arg-type]


def _default_passes(criterion: Any, output: str, verify: bool, selection: Mapping[str, Any] | None = None,
                    reconstruct: bool = False) -> list[Pass]:
    from prunec.passes import (
        ReconstructPass,
        RewriteGraphModulePass,
        RewriteModulePass,
        SelectGlobalPass,
        SelectUniformPass,
        VerifyPass,
    )
    from prunec.scoring import ScoreGroupsPass, get_criterion

    options = dict(selection or {})
    strategy = options.pop("strategy", "uniform")
    if strategy not in ("uniform", "global"):
        raise TargetError(f"selection={strategy!r}; use 'uniform' (the same fraction of every group) or "
                          "'global' (one ranking of all channels across groups)")
    select_cls = SelectGlobalPass if strategy == "global" else SelectUniformPass
    options = {k: v for k, v in options.items() if v is not None}
    passes: list[Pass] = [ScoreGroupsPass(criterion=get_criterion(criterion)), select_cls(**options)]
    if reconstruct:
        passes.append(ReconstructPass())
    passes.append(RewriteGraphModulePass() if output == "graph_module" else RewriteModulePass())
    if verify:
        passes.append(VerifyPass(fallback=output == "auto"))
    return passes


def _resolve_overrides(model: nn.Module, overrides: Mapping[Any, float] | None) -> dict[str, float] | None:
    if not overrides:
        return None
    if not isinstance(overrides, Mapping):
        raise InputError(f"overrides= takes a dict of module (or name) -> fraction to remove, got "
                         f"{type(overrides).__name__}")
    names = _resolve_ignore(model, list(overrides), arg="overrides")
    return dict(zip(names, overrides.values(), strict=True))


def prune(model: nn.Module, example_inputs: ExampleInputsLike = None, *, ratio: float | None = None,
          target: str | Target | None = None, criterion: Any = "l2",
          ignore: Iterable[str | nn.Module] = (), round_to: int | None = None, strict: bool = False,
          inplace: bool = False, verify: bool = True, output: str = "auto",
          pipeline: str | Sequence[str | Pass] | None = None,
          calibration: Sequence[ExampleInputsLike] = (),
          loss_fn: Callable[[Any, int], torch.Tensor] | None = None, tolerance: float | None = None,
          rules: RuleRegistry | None = None, selection: str = "uniform", min_keep: int = 1,
          max_ratio: float | None = None, overrides: Mapping[Any, float] | None = None,
          target_tolerance: float = 0.02, reconstruct: bool = False, latency: Any = None,
          steps: int = 1, callback: Callable[[nn.Module, int], None] | None = None,
          attention: str = "heads", kinds: Iterable[str] | str | None = None, zero_invariant_only: bool = False,
          tracer: str = "auto", progress: ProgressLike = None) -> PruneResult:
    """Prune `model` into a physically smaller one and verify it.

    Args:
        model: the model; untouched unless `inplace=True`. A path to an .onnx file or an
            onnx.ModelProto is pruned by `prunec.onnx_api.prune` and gives an OnnxPruneResult.
        example_inputs: a tensor, a tuple of positional tensors or a dict of keyword tensors.
        ratio: remove this fraction of every prunable group's channels (lowest scores first). With a
            custom `pipeline`, ratio and target may both be left out (its passes then decide).
        target: 'macs=0.5', 'params=0.5' or 'latency=0.5': keep at most this share of the MACs,
            parameters or measured latency (instead of `ratio`), landing within `target_tolerance`.
        criterion: importance criterion name ('l2', 'l1', ...) or a Criterion instance.
        ignore: modules (or names) whose output channels must be kept.
        round_to: keep channel counts multiples of this (hardware-friendly widths).
        strict: raise UnsupportedOpError for ops without a rule instead of pinning them.
        inplace: modify `model` itself.
        verify: check the contract (zeroed original == pruned) and raise VerificationError if not.
        output: 'module' (same classes), 'graph_module', or 'auto' (module, else GraphModule).
        pipeline: replace the default passes (text such as 'l2,select-uniform,rewrite-module,verify'
            or a list of step texts and Pass objects).
        calibration: input batches for data-driven criteria.
        loss_fn: loss(output, batch_index) for gradient-based criteria.
        tolerance: maximum relative output difference allowed by verification (default: 1e-4 for
            float32/float64 outputs, 5e-3 for float16 and 2e-2 for bfloat16, their rounding level).
        rules: a rule registry (default: the global one).
        selection: 'uniform' (the same fraction of every group) or 'global' (one ranking of all
            channels across groups, on normalized scores).
        min_keep: every group keeps at least this many channels.
        max_ratio: no group loses more than this fraction of its channels (default: 0.99 for uniform,
            0.9 for global).
        overrides: module (or name) -> fraction of its channels to remove, fixed; 0 keeps them.
        target_tolerance: a MACs/params/latency target is met from below within this relative
            margin, or TargetError says which figures are achievable.
        reconstruct: after choosing channels, refit the layers that lose input channels by least
            squares on `calibration` (the pruned model then equals the zeroed refitted model).
        latency: a prunec.latency.LatencyModel for latency targets (default: measured on the example
            inputs' device and cached on disk).
        steps: prune in this many steps towards the target (see prunec.schedule).
        callback: callback(model, step) after each step, e.g. to fine-tune before the next one.
        attention: 'heads' (remove whole attention heads) or 'head_dim' (dimensions inside heads).
        kinds: prune only groups of these kinds ('heads', 'head_dim', 'hidden', 'mlp'; see
            `Group.kind`); the others keep all their channels. None prunes every kind.
        zero_invariant_only: prune only groups where removing equals zeroing (leave out groups
            whose channels a LayerNorm/RMSNorm, mean or contraction mixes).
        tracer: how the model is traced, as in `analyze`: 'auto' (record one eager forward, falling
            back to torch.export when the recording is not faithful), 'record' or 'export'.
        progress: True for a progress bar, or a callable receiving a ProgressEvent at the start of
            every stage; raising from it (KeyboardInterrupt too) cancels cleanly.

    Returns:
        PruneResult with `.model`, `.removed` (Slice form, original numbering) and `.report`.

    Raises:
        TargetError, InputError, TraceError, UnsupportedOpError (strict), VerificationError. On any
        error or interruption the user's model is left as it was (with `inplace=True` too).
    """
    from prunec.onnx_api import is_onnx_model

    if is_onnx_model(model):
        from prunec import onnx_api

        onnx_api.reject_torch_options(inplace=inplace, output=output, pipeline=pipeline, calibration=calibration,
                                      loss_fn=loss_fn, tracer=tracer)
        _reject_group_selection(attention, kinds, zero_invariant_only)
        reporter = Progress(progress, 4 + int(verify))  # analyse, score, select, rewrite, verify
        try:
            result = onnx_api.prune(model, example_inputs, ratio=ratio, target=target, criterion=criterion,
                                    ignore=ignore, round_to=round_to, strict=strict, verify=verify,  # type: ignore[arg-type]
                                    tolerance=1e-4 if tolerance is None else tolerance, rules=rules,
                                    progress=reporter.stage)
            reporter.done()
        finally:
            reporter.close()
        return result  # type: ignore[return-value]
    _load_builtins()
    if output not in OUTPUT_KINDS:
        raise InputError(f"output={output!r}; use one of {', '.join(OUTPUT_KINDS)}")
    check_tracer(tracer)
    # a custom pipeline may select channels by its own rule: then a target is optional
    custom = pipeline is not None and ratio is None and target is None
    tgt = None if custom else _target_from(ratio, target)
    kinds_t = check_kinds(kinds)
    if steps != 1 or callback is not None:
        from prunec.schedule import prune_iteratively

        if tgt is None:
            raise TargetError("iterative pruning (steps/callback) needs ratio= or target= to split into steps")
        return prune_iteratively(
            model, example_inputs, tgt, steps=steps, callback=callback, criterion=criterion, ignore=ignore,
            round_to=round_to, strict=strict, inplace=inplace, verify=verify, output=output,
            pipeline=pipeline, calibration=calibration, loss_fn=loss_fn, tolerance=tolerance, rules=rules,
            selection=selection, min_keep=min_keep, max_ratio=max_ratio, overrides=overrides,
            target_tolerance=target_tolerance, reconstruct=reconstruct, latency=latency,
            attention=attention, kinds=kinds, zero_invariant_only=zero_invariant_only, tracer=tracer)
    if round_to is not None and (not isinstance(round_to, int) or round_to < 1):
        raise TargetError(f"round_to must be a positive integer, got {round_to!r}")
    inputs = ExampleInputs.from_user(example_inputs)
    if pipeline is None:
        chosen = {"strategy": selection, "min_keep": min_keep, "max_ratio": max_ratio,
                  "overrides": _resolve_overrides(model, overrides), "tolerance": target_tolerance,
                  "latency": latency}
        passes = _default_passes(criterion, output, verify, chosen, reconstruct)
        _check_values(model, inputs, verify)
    else:
        passes = parse_pipeline(pipeline)  # text, or a list of step texts and Pass instances
    manager = PassManager(passes)
    # check the chain before the (expensive) trace: analyze provides the model and its analysis
    provided = {Artifact.MODEL, Artifact.ANALYSIS} | ({Artifact.CALIBRATION} if calibration else set())
    manager.check(frozenset(provided))
    if isinstance(model, nn.Module) and any(p.device.type == "meta" for p in model.parameters()):
        raise InputError(f"{type(model).__name__} has parameters on the meta device: prune() needs their "
                         "values to score and slice channels. Load real weights first, or use "
                         "prunec.analyze(model, inputs) for the shape-only analysis.")
    reporter = Progress(progress, ANALYSIS_STAGES + len(passes))
    try:
        with restore_on_error(model) if inplace else contextlib.nullcontext():
            result = _prune(model, inputs, tgt, ignore, round_to, strict, inplace, passes, calibration,
                            loss_fn, tolerance, rules, reporter, attention, kinds_t,
                            zero_invariant_only, tracer)
            reporter.done()
    finally:
        reporter.close()
    return result


def _prune(model: nn.Module, inputs: ExampleInputs, tgt: Target | None, ignore: Iterable[str | nn.Module],
           round_to: int | None, strict: bool, inplace: bool, passes: list[Pass],
           calibration: Sequence[ExampleInputsLike], loss_fn: Any, tolerance: float | None,
           rules: RuleRegistry | None, reporter: Progress, attention: str,
           kinds_t: tuple[str, ...] | None, zero_invariant_only: bool, tracer: str) -> PruneResult:
    params_before = count_params(model)
    source_state = tuple(state_entries(model))
    ignore = _resolve_ignore(model, ignore)  # module objects name the user's model, not the copy
    working = model if inplace else copy.deepcopy(model)
    analysis = analyze(working, inputs, ignore=ignore, strict=strict, rules=rules, attention=attention,
                       tracer=tracer, progress=reporter)
    analysis = _restrict(analysis, kinds_t, zero_invariant_only)
    _check_finite(model, inputs, analysis)
    state = PruneState(model=working, inputs=inputs, analysis=analysis, target=tgt, round_to=round_to,
                       strict=strict, calibration=tuple(ExampleInputs.from_user(c) for c in calibration),
                       loss_fn=loss_fn, tolerance=tolerance)
    state = PassManager(passes, on_pass=lambda key, i, n: reporter.stage(key)).run(state)
    return _result(model, state, params_before, source_state)


def _check_values(model: nn.Module, inputs: ExampleInputs, verify: bool) -> None:
    """The default passes read weight values: refuse meta tensors up front."""
    check_devices(model, inputs)
    tensors = [*model.state_dict(keep_vars=True).values(), *inputs.tensors()]
    what = ("verify the pruned model (verify=True needs values to compare)" if verify
            else "score channels (the criterion reads weight values)")
    if any(p.device.type == "meta" for p in model.parameters()):
        raise InputError(f"{type(model).__name__} has parameters on the meta device: prune() needs their "
                         f"values to score and slice channels{' and to verify the result' if verify else ''}. Load real "
                         "weights first, or use prunec.analyze(model, inputs) for the shape-only analysis.")
    if any(t.device.type == "meta" for t in tensors):
        raise InputError(f"the model or its inputs are on the meta device, which holds no values, so prunec "
                         f"cannot {what}. Load real weights first; prunec.analyze() works on meta models.")


def _check_finite(model: nn.Module, inputs: ExampleInputs, analysis: Analysis) -> None:
    """NaN/Inf in a parameter, a buffer that is pruned with channels (BN statistics) or an input
    would make scores meaningless and every comparison vacuous. Other buffers may hold -inf on
    purpose (attention masks)."""
    members = {m.param for g in analysis.groups for m in g.members}
    state = model.state_dict(keep_vars=True)
    named = [(n, t) for n, t in model.named_parameters()]
    named += [(n, t) for n, t in state.items() if n in members and not isinstance(t, nn.Parameter)]
    named += [(f"example input {i}", t) for i, t in enumerate(inputs.tensors())]
    for name, t in named:
        if not (t.is_floating_point() or t.is_complex()) or t.device.type == "meta":
            continue
        finite = torch.isfinite(t.detach())
        if bool(finite.all()):
            continue
        nan = int(torch.isnan(t.detach()).sum())
        inf = int((~finite).sum()) - nan
        raise InputError(f"'{name}' holds {nan} NaN and {inf} infinite value(s); channel scores and "
                         "verification need finite numbers. Repair them (e.g. torch.nan_to_num_) or "
                         "re-initialise that layer before pruning.")


def _result(original: nn.Module, state: PruneState, params_before: int,
            source_state: tuple[tuple[str, tuple[int, ...], str], ...] = ()) -> PruneResult:
    analysis = state.analysis
    assert analysis is not None  # analyze() ran above
    masks = state.masks or {}
    pruned = state.pruned if state.pruned is not None else state.model
    removed = tuple(analysis.group(gid).select(ch) for gid, ch in sorted(masks.items()) if ch)
    keep = analysis.keep_mask(masks)
    shapes = {v.param: v.shape for v in analysis.graph.state_values()}
    report = build_report(analysis, keep, removed, model=type(original).__name__, params_before=params_before,
                          params_after=count_params(pruned), output_kind=state.output_kind or "module",
                          verification=state.verification, notes=state.notes, shape_of=shapes.__getitem__)
    return PruneResult(pruned, removed, report, analysis, state.verification, source_state=source_state)
