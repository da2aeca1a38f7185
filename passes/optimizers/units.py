"""Channel units: every channel of every prunable group, as slices of the model's parameters.

A unit is one zero-invariant channel: its slice of every member of its group (producer rows, bias
and norm entries, consumer columns). Zeroing all of a unit's parameter slices is what makes its
removal lossless, so the optimizers read and write parameters only through this table.

One parameter can hold slices of several units of different groups (a conv weight: rows in one
group, columns in another). Every operation here acts on exactly the member slices of the units
asked for, so an element shared by two units is touched by both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from prunec.analysis.groups import Group
from prunec.analysis.result import Analysis
from prunec.errors import InputError

Reduce = str
"""'sum' or 'amax'."""


@dataclass(frozen=True)
class UnitSlice:
    """One member slice of one parameter: `index` along `dim`, each entry belonging to `unit`."""

    param: int
    dim: int
    index: torch.Tensor
    unit: torch.Tensor

    def view_shape(self, ndim: int) -> list[int]:
        """Shape that broadcasts one value per index along `dim`."""
        shape = [1] * ndim
        shape[self.dim] = -1
        return shape


class ChannelUnits:
    """The prunable channels of a model, numbered 0..count-1 group by group.

    Args:
        model: the model the analysis was made from (its parameters are read and written).
        analysis: `prunec.analyze(model, example_inputs)`.

    Groups that are not zero-invariant (a LayerNorm or attention contraction mixes their channels,
    so zeroing is not removal), that hold no parameter, or that have a single channel are left out;
    `skipped` says which and why. Frozen parameters (requires_grad=False) are zeroed with their
    units but never trained.

    """

    def __init__(self, model: nn.Module, analysis: Analysis) -> None:
        named = dict(model.named_parameters(remove_duplicate=False))
        self.params: list[nn.Parameter] = []
        self.names: list[str] = []
        position: dict[int, int] = {}
        chosen: list[Group] = []
        self.skipped: dict[int, str] = {}
        for g in analysis.groups:
            reason = self._skip_reason(g, named)
            if reason:
                self.skipped[g.id] = reason
                continue
            chosen.append(g)
        if not chosen:
            reasons = "; ".join(f"group {gid}: {why}" for gid, why in sorted(self.skipped.items())[:5])
            raise InputError("the model has no group a structured-sparse optimizer can drive to zero "
                             f"(zero-invariant, with a parameter and 2+ channels). {reasons}")
        self.groups: tuple[Group, ...] = tuple(chosen)
        offsets = np.cumsum([0] + [g.channel_count for g in chosen])
        self.offset: dict[int, int] = {g.id: int(o) for g, o in zip(chosen, offsets[:-1], strict=True)}
        self.count = int(offsets[-1])
        self.group_of = np.repeat([g.id for g in chosen], [g.channel_count for g in chosen]).astype(np.int64)
        self.channel_of = np.concatenate([np.arange(g.channel_count) for g in chosen]).astype(np.int64)
        self.slices: list[UnitSlice] = []
        for g in chosen:
            for member, chan in zip(g.members, g.channel_of, strict=True):
                units = self.offset[g.id] + np.asarray(chan, dtype=np.int64)
                index = np.asarray(member.indices, dtype=np.int64)
                p = named.get(member.param)
                if p is None:
                    continue  # a buffer (BN running stats): not trained, and removed with the channel
                if id(p) not in position:
                    position[id(p)] = len(self.params)
                    self.params.append(p)
                    self.names.append(member.param)
                k = position[id(p)]
                self.slices.append(UnitSlice(k, member.dim, torch.as_tensor(index, device=p.device),
                                             torch.as_tensor(units, device=p.device)))
        self.device = self.params[0].device
        self.size = self.reduce([torch.ones_like(p) for p in self.params])
        """Number of parameter elements of each unit (shared elements counted in each unit)."""

    @staticmethod
    def _skip_reason(g: Group, named: Mapping[str, nn.Parameter]) -> str:
        if not g.zero_invariant:
            return "not zero-invariant (" + "; ".join(g.notes) + "): zeroing it is not removing it"
        if g.channel_count < 2:
            return "a single channel (removing it would empty its layers)"
        if not any(m.param in named for m in g.members):
            return "no parameter among its members (buffers only)"
        return ""

    # ---- reading ---------------------------------------------------------------------------

    def reduce(self, values: Sequence[torch.Tensor | None], how: Reduce = "sum") -> torch.Tensor:
        """One number per unit: the sum (or max) of `values[k]` over unit slices of parameter k.

        `values` is aligned with `self.params` (same shapes), e.g. `[p * p for p in params]`; a
        None entry counts as zeros.
        """
        out = torch.zeros(self.count, dtype=torch.float32, device=self.device)
        for s in self.slices:
            v = values[s.param]
            if v is None:
                continue
            rows = v.detach().index_select(s.dim, s.index).movedim(s.dim, 0).reshape(len(s.index), -1)
            unit = s.unit.to(out.device)
            if how == "sum":
                out.index_add_(0, unit, rows.float().sum(1).to(out.device))
            else:
                out.scatter_reduce_(0, unit, rows.float().abs().amax(1).to(out.device), reduce="amax")
        return out

    def norms(self) -> torch.Tensor:
        """L2 norm of each unit's parameter slices."""
        return self.reduce([p.detach() * p.detach() for p in self.params]).sqrt()

    def exact_zeros(self) -> torch.Tensor:
        """Bool per unit: every element of every parameter slice of the unit is exactly 0.0."""
        return self.reduce([p.detach() for p in self.params], "amax") == 0

    # ---- writing (exactly the member slices of the units asked for) -----------------------

    def fill_(self, units: torch.Tensor, tensors: Sequence[torch.Tensor | None], value: float = 0.0) -> None:
        """Set the slices of the `units` (bool per unit) in `tensors` (aligned with params) to `value`."""
        if not bool(units.any()):
            return
        for s in self.slices:
            t = tensors[s.param]
            if t is None:
                continue
            sel = s.index[units.to(s.unit.device)[s.unit]]
            if len(sel):
                t.index_fill_(s.dim, sel, value)

    def zero_(self, units: torch.Tensor) -> None:
        """Set every parameter slice of the `units` (bool per unit) to exactly 0.0."""
        with torch.no_grad():
            self.fill_(units, [p.data for p in self.params])

    def scale_(self, factor: torch.Tensor) -> None:
        """Multiply each unit's slices by `factor[unit]` (units with factor 1 are left untouched)."""
        moved = factor != 1
        if not bool(moved.any()):
            return
        with torch.no_grad():
            for s in self.slices:
                p = self.params[s.param].data
                keep = moved.to(s.unit.device)[s.unit]
                if not bool(keep.any()):
                    continue
                idx = s.index[keep]
                f = factor.to(p.device)[s.unit[keep]].to(p.dtype).view(s.view_shape(p.ndim))
                p.index_copy_(s.dim, idx, p.index_select(s.dim, idx) * f)

    def expand(self, coef: torch.Tensor, k: int) -> torch.Tensor | None:
        """Per element of parameter k: the sum of `coef[unit]` over the units holding it (None if no
        unit of parameter k has a non-zero coefficient).
        """
        p = self.params[k]
        out: torch.Tensor | None = None
        for s in self.slices:
            if s.param != k:
                continue
            c = coef.to(p.device)[s.unit]
            if not bool((c != 0).any()):
                continue
            if out is None:
                out = torch.zeros_like(p, dtype=coef.dtype)
            shape = list(p.shape)
            shape[s.dim] = len(s.index)
            out.index_add_(s.dim, s.index, c.view(s.view_shape(p.ndim)).expand(shape))
        return out

    # ---- naming --------------------------------------------------------------------------

    def masks(self, units: np.ndarray | torch.Tensor) -> dict[int, tuple[int, ...]]:
        """Group id -> channels of the chosen units (the MASKS artifact's form); empty groups left out."""
        chosen = np.asarray(units.cpu() if isinstance(units, torch.Tensor) else units, dtype=bool)
        out: dict[int, tuple[int, ...]] = {}
        for u in np.flatnonzero(chosen):
            out.setdefault(int(self.group_of[u]), ())
            out[int(self.group_of[u])] += (int(self.channel_of[u]),)
        return out

    def units_of(self, masks: Mapping[int, Iterable[int]]) -> np.ndarray:
        """Bool per unit from group id -> channels."""
        out = np.zeros(self.count, dtype=bool)
        for gid, chans in masks.items():
            if gid not in self.offset:
                raise InputError(f"group {gid} is not one of the optimizer's prunable groups "
                                 f"({sorted(self.offset)})")
            out[self.offset[gid] + np.asarray(list(chans), dtype=np.int64)] = True
        return out
