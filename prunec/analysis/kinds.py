"""Group kinds: classify each group as attention heads, head dims, hidden size or MLP width.

The role rules (`prunec.rules.torch_attention`) tag axes of ops; a tag reaches every atom of that
axis, and through the coupling solve every channel those atoms belong to. A group takes the first
kind, in `KINDS` order, that any of its channels carries; a group with no tag is 'mlp'.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np

from prunec.analysis.atoms import AtomTable
from prunec.analysis.coupling import CouplingResult
from prunec.analysis.groups import Group
from prunec.errors import InputError
from prunec.ir.graph import Graph
from prunec.rules.registry import RuleRegistry
from prunec.rules.torch_attention import HEAD_DIM, HEADS, HIDDEN, KINDS, MLP, axis_roles

ATTENTION_MODES = (HEADS, HEAD_DIM)


def role_atoms(graph: Graph, table: AtomTable, registry: RuleRegistry) -> dict[str, np.ndarray]:
    """Role -> atoms tagged with it by the role rules (a failing role rule tags nothing)."""
    found: dict[str, list[np.ndarray]] = {r: [] for r in (HEADS, HEAD_DIM, HIDDEN)}
    for tags in axis_roles(graph, registry).values():
        for slot, role in tags:
            found[role].append(table.atoms(table.slot_id(slot)))
    return {r: np.concatenate(a) if a else np.zeros(0, np.int64) for r, a in found.items()}


def component_roles(coupling: CouplingResult, roles: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Role -> boolean mask over components."""
    out: dict[str, np.ndarray] = {}
    for role, atoms in roles.items():
        mask = np.zeros(coupling.num_components, dtype=bool)
        mask[coupling.labels[atoms]] = True
        out[role] = mask
    return out


def classify(groups: Sequence[Group], coupling: CouplingResult, roles: dict[str, np.ndarray]
             ) -> list[Group]:
    """The groups with `kind` set from the roles of their channels."""
    if not groups:
        return []
    comp = component_roles(coupling, roles)
    sizes = np.asarray([len(g.components) for g in groups], dtype=np.int64)
    starts = np.cumsum(sizes) - sizes
    every = np.concatenate([g.components for g in groups])
    kind = np.full(len(groups), MLP, dtype=object)
    filled = sizes > 0  # reduceat needs strictly increasing starts
    for role in (HIDDEN, HEAD_DIM, HEADS):  # the first role found wins, so set them last to first
        hits = np.zeros(len(groups), dtype=bool)
        if len(every):
            hits[filled] = np.add.reduceat(comp[role][every].astype(np.int64), starts[filled]) > 0
        kind[hits] = role
    return [g if g.kind == k else dataclasses.replace(g, kind=k) for g, k in zip(groups, kind.tolist())]


def check_kinds(kinds: Iterable[str] | str | None) -> tuple[str, ...] | None:
    """Validate a user's `kinds=` argument ('heads', ('mlp', 'hidden'), or None for all)."""
    if kinds is None:
        return None
    items = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    bad = [k for k in items if k not in KINDS]
    if bad or not items:
        raise InputError(f"kinds={kinds!r}: each kind must be one of {', '.join(KINDS)} "
                         "(e.g. kinds=('heads', 'mlp') prunes attention heads and MLP widths only)")
    return items


def check_attention(attention: str) -> str:
    """Validate `attention=` ('heads' or 'head_dim')."""
    if attention not in ATTENTION_MODES:
        raise InputError(f"attention={attention!r}; use 'heads' (remove whole attention heads) or "
                         "'head_dim' (remove dimensions inside every head)")
    return attention
