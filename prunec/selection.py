"""Helpers every selection pass needs: turn scores into removals that leave a valid model."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from prunec.analysis.groups import Group


def lowest(scores: np.ndarray, count: int) -> list[int]:
    """The `count` channels with the lowest scores (ties broken by channel number)."""
    order = np.argsort(np.asarray(scores, dtype=np.float64), kind="stable")
    return sorted(int(c) for c in order[:max(0, count)])


def keep_every_member(group: Group, removed: list[int], scores: np.ndarray) -> list[int]:
    """Give back the best channel of any member that would lose all its entries.

    A group can span several producers (a DenseNet block, an Inception concat): removing by score
    alone could empty one conv entirely, which no module can represent.
    """
    gone = np.zeros(group.channel_count, dtype=bool)
    gone[np.asarray(removed, dtype=np.int64)] = True
    for chan_of in group.channel_of:
        touched = np.unique(chan_of)
        if len(touched) and gone[touched].all():
            best = touched[np.argmax(np.asarray(scores)[touched])]
            gone[best] = False
    return [int(c) for c in np.flatnonzero(gone)]


def finalize(groups: Mapping[int, Group], removed: Mapping[int, list[int]],
             scores: Mapping[int, np.ndarray]) -> dict[int, tuple[int, ...]]:
    """Apply `keep_every_member` to every group and freeze the result."""
    return {gid: tuple(keep_every_member(groups[gid], list(chs), scores[gid])) for gid, chs in removed.items()}
