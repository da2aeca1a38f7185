"""Importance criteria and the one generic pass that drives them over every group.

A criterion sees one member slice at a time, rows = that member's indices along its channel axis
(moved to axis 0), and returns one score per row. The driver sums rows per channel, normalizes
each member's channel scores (so a big conv does not drown its BN), and adds members up. No
criterion branches on layer type. Criteria that need gradients or activations declare it in
`needs`; the driver gathers them once for all.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch

from prunec.analysis.groups import Group, Slice
from prunec.errors import PluginError, PruneError
from prunec.pipeline.pass_base import Pass, PassResult
from prunec.pipeline.registry import check_name, check_unclaimed, register_pass
from prunec.pipeline.state import Artifact, PruneState
from prunec.rewrite.slicing import get_state
from prunec.sources import source_of


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
    """Accumulated gradient, same shape as `weight` (when GRADIENTS is needed)."""
    grad_sq: torch.Tensor | None = None
    """Accumulated squared gradient (empirical Fisher diagonal), same shape as `weight`."""
    extras: Mapping[str, Any] = field(default_factory=dict)


class Criterion(abc.ABC):
    """Scores channels. Subclass, register with @register_criterion("name"), implement score_slice."""

    name: ClassVar[str] = ""
    needs: ClassVar[frozenset[Need]] = frozenset()
    uses_buffers: ClassVar[bool] = False
    """Whether buffer members (BN running stats) are scored too; by default only parameters are."""

    @abc.abstractmethod
    def score_slice(self, data: SliceData) -> torch.Tensor:
        """One non-negative score per row of `data.weight`."""

    def score_group(self, group: Group, member_scores: list[np.ndarray]) -> np.ndarray:
        """Combine per-member channel scores into the group's; default: mean-normalize and sum."""
        total = np.zeros(group.channel_count, dtype=np.float64)
        for s in member_scores:
            mean = float(np.mean(s)) if len(s) else 0.0
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


def gather_gradients(state: PruneState) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Sum of gradients and of squared gradients of every parameter over the calibration batches.

    The loss is `state.loss_fn(output, batch_index)` when given, else the mean square of the outputs
    (a label-free proxy that still ranks channels by their effect on the output).
    """
    if not state.calibration:
        raise PruneError("this criterion needs calibration batches: pass calibration=[inputs, ...] "
                         "to prunec.prune (a few batches of real inputs)")
    model = state.model
    params = dict(model.named_parameters())
    sums = {n: torch.zeros_like(p) for n, p in params.items()}
    squares = {n: torch.zeros_like(p) for n, p in params.items()}
    was_training = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        for i, batch in enumerate(state.calibration):
            model.zero_grad(set_to_none=True)
            out = batch.call(model)
            if state.loss_fn is not None:
                loss = state.loss_fn(out, i)
            else:
                leaves = [t for t in torch.utils._pytree.tree_flatten(out)[0]
                          if isinstance(t, torch.Tensor) and t.is_floating_point()]
                loss = sum(t.float().pow(2).mean() for t in leaves)
            loss.backward()
            for n, p in params.items():
                if p.grad is not None:
                    sums[n] += p.grad.detach()
                    squares[n] += p.grad.detach() ** 2
    finally:
        model.zero_grad(set_to_none=True)
        for m, flag in was_training:
            m.training = flag
    return {n: (sums[n], squares[n]) for n in params}


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
        crit = get_criterion(self.criterion)
        analysis = state.analysis
        assert analysis is not None  # guaranteed by `requires`
        grads = gather_gradients(state) if Need.GRADIENTS in crit.needs else {}
        buffers = {n for n, _ in state.model.named_buffers()}
        scores: dict[int, np.ndarray] = {}
        for group in analysis.groups:
            member_scores: list[np.ndarray] = []
            for member, chan_of in zip(group.members, group.channel_of):
                is_buffer = member.param in buffers
                if is_buffer and not crit.uses_buffers:
                    continue
                t = get_state(state.model, member.param)
                g = grads.get(member.param)
                data = SliceData(member, _rows(t, member).float(), is_buffer,
                                 None if g is None else _rows(g[0], member).float(),
                                 None if g is None else _rows(g[1], member).float())
                rows = crit.score_slice(data).detach().double().cpu().numpy().reshape(-1)
                member_scores.append(np.bincount(chan_of, weights=rows, minlength=group.channel_count))
            if not member_scores:
                member_scores = [np.ones(group.channel_count)]
            scores[group.id] = np.asarray(crit.score_group(group, member_scores), dtype=np.float64)
        return PassResult(state.replace(scores=scores))
