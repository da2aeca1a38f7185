"""Importance criteria and the one generic pass that drives them over every group.

A criterion sees one member slice at a time, rows = that member's indices along its channel axis
(moved to axis 0), and returns one score per row (or None: "this member tells me nothing"). The
driver sums rows per channel and lets the criterion combine its members into the group's scores.
No criterion branches on layer type. Criteria that need data declare it in `needs`: the driver
then runs the calibration batches one at a time, gives each criterion that batch's gradients and/or
the energy of the activations each member multiplies, and adds the per-batch scores up.

Scores of a `relative` criterion (a weight norm, say) mean something only within a group, so the
driver divides each group's scores by their mean: every group then averages 1 and a global ranking
compares like with like. `absolute` criteria (a loss estimate, LAMP) keep their common scale.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch

from prunec.activations import (
    ChannelEnergy,
    InputTap,
    ShapeTraces,
    consumer_inputs,
    tapped_module,
    traced_module,
)
from prunec.analysis.groups import Group, Slice
from prunec.analysis.result import Analysis
from prunec.errors import PluginError, PruneError
from prunec.inputs import ExampleInputs
from prunec.pipeline.pass_base import Pass, PassResult
from prunec.pipeline.registry import check_name, check_unclaimed, register_pass
from prunec.pipeline.state import Artifact, PruneState
from prunec.rewrite.slicing import get_state
from prunec.sources import source_of

NEEDS_CALIBRATION = ("criterion {name!r} needs calibration batches: pass calibration=[inputs, ...] to "
                     "prunec.prune (a few batches of real inputs; with loss_fn=loss(output, batch_index) "
                     "for a task loss, else the outputs' mean square is used)")


class Need(str, Enum):
    """Data a criterion needs besides the weights."""

    GRADIENTS = "gradients"
    ACTIVATIONS = "activations"


@dataclass(frozen=True)
class SliceData:
    """One member slice as a criterion sees it: rows are the member's indices."""

    member: Slice
    weight: torch.Tensor
    """(rows, rest) values of the parameter at the member's indices, flattened to 2-D."""
    is_buffer: bool
    grad: torch.Tensor | None = None
    """This calibration batch's gradient, same shape as `weight` (when GRADIENTS is needed)."""
    grad_sq: torch.Tensor | None = None
    """`grad` squared (one batch's empirical Fisher diagonal)."""
    activation: torch.Tensor | None = None
    """(rows,) RMS of the input channel each row multiplies, this batch (when ACTIVATIONS is needed);
    None when the member does not weigh an incoming channel (a producer row, a norm scale)."""
    uses: tuple[tuple[str, str], ...] = ()
    """(op key, port) of every op that reads the parameter, e.g. ('aten::batch_norm', 'weight')."""
    extras: Mapping[str, Any] = field(default_factory=dict)


class Criterion(abc.ABC):
    """Scores channels. Subclass, register with @register_criterion("name"), implement score_slice."""

    name: ClassVar[str] = ""
    needs: ClassVar[frozenset[Need]] = frozenset()
    uses_buffers: ClassVar[bool] = False
    """Whether buffer members (BN running stats) are scored too; by default only parameters are."""
    scale: ClassVar[str] = "relative"
    """'relative': scores compare only within a group (the driver mean-normalizes each group);
    'absolute': scores share one scale across groups and are kept as they are."""
    fallback: ClassVar[str | None] = None
    """Data-free criterion used for a group in which no member was scored (None: all channels tie)."""

    @abc.abstractmethod
    def score_slice(self, data: SliceData) -> torch.Tensor | None:
        """One score per row of `data.weight`, or None when this member does not contribute."""

    def score_group(self, group: Group, member_scores: list[np.ndarray]) -> np.ndarray:
        """Combine per-member channel scores into the group's; default: mean-normalize and sum."""
        total = np.zeros(group.channel_count, dtype=np.float64)
        for s in member_scores:
            mean = float(np.mean(np.abs(s))) if len(s) else 0.0
            total += s / mean if mean > 0 else s
        return total


@dataclass(frozen=True)
class CriterionEntry:
    """A registered criterion class and its source."""

    name: str
    cls: type[Criterion]
    source: str


CRITERIA: dict[str, CriterionEntry] = {}
C = TypeVar("C", bound=type)


def register_criterion(name: str, *, override: bool = False) -> Callable[[C], C]:
    """Class decorator: register a Criterion subclass under `name`."""
    def wrap(cls: C) -> C:
        check_name("criterion", name, cls)
        if not (isinstance(cls, type) and issubclass(cls, Criterion)):
            raise PluginError(f"@register_criterion({name!r}) must decorate a subclass of prunec.Criterion, "
                              f"got {cls!r}")
        src = source_of(cls)
        check_unclaimed("criterion", name, cls, src, override)
        cls.name = name  # type: ignore[attr-defined]
        CRITERIA[name] = CriterionEntry(name, cls, src)  # type: ignore[arg-type]
        return cls
    return wrap


def get_criterion(spec: str | Criterion) -> Criterion:
    """A criterion instance from a name or an instance."""
    if isinstance(spec, Criterion):
        return spec
    if spec not in CRITERIA:
        import prunec.passes  # noqa: F401  (the built-in criteria register on import)
    if spec not in CRITERIA:
        import difflib

        close = difflib.get_close_matches(spec, list(CRITERIA), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise PruneError(f"unknown criterion {spec!r}{hint}; known: {', '.join(sorted(CRITERIA))}")
    return CRITERIA[spec].cls()


def _rows(t: torch.Tensor, member: Slice) -> torch.Tensor:
    moved = t.detach().movedim(member.dim, 0)
    rows = moved.index_select(0, torch.as_tensor(member.indices, dtype=torch.long, device=t.device))
    return rows.reshape(len(member.indices), -1)


def _loss(state: PruneState, out: Any, index: int) -> torch.Tensor:
    if state.loss_fn is not None:
        return state.loss_fn(out, index)
    leaves = [t for t in torch.utils._pytree.tree_flatten(out)[0]
              if isinstance(t, torch.Tensor) and t.is_floating_point()]
    return sum(t.float().pow(2).mean() for t in leaves)  # type: ignore[return-value]


def batch_gradients(state: PruneState, batch: ExampleInputs, index: int) -> dict[str, torch.Tensor]:
    """Gradient of every parameter for one calibration batch, the model in eval mode.

    The loss is `state.loss_fn(output, index)` when given, else the mean square of the outputs
    (a label-free proxy that still ranks channels by their effect on the output).
    """
    model = state.model
    params = dict(model.named_parameters())
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        model.zero_grad(set_to_none=True)
        _loss(state, batch.call(model), index).backward()
        return {n: p.grad.detach().clone() for n, p in params.items() if p.grad is not None}
    finally:
        model.zero_grad(set_to_none=True)
        for m, flag in flags:
            m.training = flag


def gather_gradients(state: PruneState) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Sum of gradients and of squared gradients of every parameter over the calibration batches."""
    if not state.calibration:
        raise PruneError(NEEDS_CALIBRATION.format(name="gradients"))
    sums: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for i, batch in enumerate(state.calibration):
        for n, g in batch_gradients(state, batch, i).items():
            s, q = sums.get(n, (torch.zeros_like(g), torch.zeros_like(g)))
            sums[n] = (s + g, q + g * g)
    return sums


@dataclass
class _Member:
    """What the driver precomputes for one member slice."""

    member: Slice
    channel_of: np.ndarray
    is_buffer: bool
    uses: tuple[tuple[str, str], ...]
    taps: list[InputTap]


@dataclass
class _Plan:
    """Members of every group with their uses and activation taps, computed once per scoring run."""

    groups: list[tuple[Group, list[_Member]]]
    wanted: dict[str, list[tuple[str, int]]]
    """Op name -> (port, axis) of every activation to record there."""

    def only(self, group_id: int) -> _Plan:
        """The plan restricted to one group (no taps)."""
        return _Plan([(g, m) for g, m in self.groups if g.id == group_id], {})


def _plan(state: PruneState, analysis: Analysis, with_taps: bool) -> _Plan:
    buffers = {n for n, _ in state.model.named_buffers()}
    graph = analysis.graph
    uses: dict[str, tuple[tuple[str, str], ...]] = {}
    for v in graph.state_values():
        u = tuple((op.op, port) for op, port in graph.consumers(v))
        for name in (v.param, *v.aliases):
            uses[str(name)] = u
    plan = _Plan([], {})
    for group in analysis.groups:
        members = []
        for m, chan_of in zip(group.members, group.channel_of, strict=True):
            taps = consumer_inputs(analysis, m) if with_taps else []
            for t in taps:
                wanted = plan.wanted.setdefault(t.op, [])
                if (t.port, t.axis) not in wanted:
                    wanted.append((t.port, t.axis))
            members.append(_Member(m, chan_of, m.param in buffers, uses.get(m.param, ()), taps))
        plan.groups.append((group, members))
    return plan


def _batch_energy(traces: ShapeTraces, plan: _Plan, batch: ExampleInputs) -> ChannelEnergy:
    energy = ChannelEnergy()
    gm = tapped_module(traced_module(traces.for_batch(batch)), plan.wanted, energy.sink_for(plan.wanted))
    with torch.no_grad():
        batch.call(gm)
    return energy


def _score_groups(crit: Criterion, state: PruneState, plan: _Plan, grads: Mapping[str, torch.Tensor],
                  energy: ChannelEnergy | None) -> dict[int, np.ndarray]:
    scores: dict[int, np.ndarray] = {}
    for group, members in plan.groups:
        member_scores: list[np.ndarray] = []
        for pm in members:
            if pm.is_buffer and not crit.uses_buffers:
                continue
            data = _slice_data(state, pm, grads, energy)
            rows = crit.score_slice(data)
            if rows is None:
                continue
            rows_np = rows.detach().double().cpu().numpy().reshape(-1)
            member_scores.append(np.bincount(pm.channel_of, weights=rows_np, minlength=group.channel_count))
        if member_scores:
            scores[group.id] = np.asarray(crit.score_group(group, member_scores), dtype=np.float64)
        elif crit.fallback is not None:
            fb = get_criterion(crit.fallback)
            scores[group.id] = _score_groups(fb, state, plan.only(group.id), {}, None)[group.id]
        else:
            scores[group.id] = np.ones(group.channel_count)
    return scores


def _slice_data(state: PruneState, pm: _Member, grads: Mapping[str, torch.Tensor],
                energy: ChannelEnergy | None) -> SliceData:
    m = pm.member
    weight = _rows(get_state(state.model, m.param), m).float()
    g = grads.get(m.param)
    grad = None if g is None else _rows(g, m).float()
    activation = None
    if energy is not None:
        for tap in pm.taps:
            rms = energy.rms(tap)
            if rms is not None:
                activation = rms if activation is None else activation + rms
    return SliceData(m, weight, pm.is_buffer, grad, None if grad is None else grad * grad, activation,
                     pm.uses)


def score_channels(state: PruneState, criterion: str | Criterion) -> dict[int, np.ndarray]:
    """Group id -> one importance score per channel (higher = keep), as the `score` pass computes."""
    crit = get_criterion(criterion)
    analysis = state.analysis
    if analysis is None:
        raise PruneError("scoring needs the analysis: run prunec.analyze (or the default pipeline) first")
    plan = _plan(state, analysis, Need.ACTIVATIONS in crit.needs)
    if not crit.needs:
        scores = _score_groups(crit, state, plan, {}, None)
    else:
        if not state.calibration:
            raise PruneError(NEEDS_CALIBRATION.format(name=crit.name or type(crit).__name__))
        scores = {}
        traces = ShapeTraces(analysis, state.model)
        for i, batch in enumerate(state.calibration):
            grads = batch_gradients(state, batch, i) if Need.GRADIENTS in crit.needs else {}
            energy = _batch_energy(traces, plan, batch) if Need.ACTIVATIONS in crit.needs else None
            for gid, s in _score_groups(crit, state, plan, grads, energy).items():
                scores[gid] = scores[gid] + s if gid in scores else s
    if crit.scale == "relative":
        for gid, s in scores.items():
            mean = float(np.mean(np.abs(s))) if len(s) else 0.0
            if mean > 0:
                scores[gid] = s / mean
    return scores


@register_pass("score")
@dataclass(frozen=True)
class ScoreGroupsPass(Pass):
    """Score every channel of every group with one criterion."""

    requires: ClassVar = frozenset({Artifact.ANALYSIS})
    provides: ClassVar = frozenset({Artifact.SCORES})

    criterion: Any = "l2"
    """A registered criterion name or a Criterion instance."""

    def __post_init__(self) -> None:
        get_criterion(self.criterion)  # an unknown name fails when the pipeline is built, not mid-run

    def run(self, state: PruneState) -> PassResult:
        return PassResult(state.replace(scores=score_channels(state, self.criterion)))
