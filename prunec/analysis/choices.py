"""Choose one option per alternative (which reshape factor carries the channels) by local search.

The neutral solve (no alternative applied) contracts every static coupling: what is left is a small
graph over its components. Each option of each choice adds edges between those components and pins
some (the factor axes it does not pass). An option is *open* when some channel it carries ends up in
a component that is neither pinned nor avoided and holds a parameter (else nothing could be pruned).
Choices that share a component interact; each cluster of interacting choices is searched on its
own: start at every choice's first open option, then repeatedly make the change that gives the
most distinct open channels (then the most open choices, then the earlier options): one choice,
every choice of one kind together, every choice one step on, or (small clusters) two choices at
once; stop when no change helps. A configuration is evaluated with one connected-components call
over the cluster's contracted graph, so the search costs little. nn.MultiheadAttention's
(B, E) -> (B*H, D) -> (B, H, T, D) needs several choices to leave the batch factor together; a
channel shuffle's split and merge must meet on one factor.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


@dataclass(frozen=True)
class Option:
    """One option, contracted: `pairs` (k, 2) neutral components it couples, `pins` those it pins."""

    pairs: np.ndarray
    pins: np.ndarray


@dataclass(frozen=True)
class Choice:
    """A choice between options; `key` identifies it to the caller, `kind` groups choices that are
    the same decision in different places (q, k and v are split the same way).
    """

    key: Hashable
    options: tuple[Option, ...]
    kind: Hashable = None


def _open_in(option: Option, closed: np.ndarray) -> bool:
    """Open when some pair has both ends open (in a solution where it is not applied yet)."""
    if len(option.pairs) == 0:
        return False
    return bool((~closed[option.pairs[:, 0]] & ~closed[option.pairs[:, 1]]).any())


def first_open(choice: Choice, closed: np.ndarray) -> int:
    """The first option open in the neutral solution (0 when none is)."""
    return next((o for o, opt in enumerate(choice.options) if _open_in(opt, closed)), 0)


class _Cluster:
    """Choices that share components, with the components renumbered locally (0 = 'pinned')."""

    def __init__(self, choices: list[Choice], closed: np.ndarray, avoided: np.ndarray,
                 state: np.ndarray) -> None:
        self.choices = choices
        comps = np.unique(np.concatenate(
            [np.concatenate([o.pairs.ravel(), o.pins]) for c in choices for o in c.options]))
        comps = comps[~(closed[comps] & ~avoided[comps])]  # pinned components act as the pin node
        self.comps = comps
        self.n = len(comps) + 1
        self.avoided = np.zeros(self.n, dtype=bool)
        self.avoided[1:] = avoided[comps]
        self.state = np.zeros(self.n, dtype=bool)
        self.state[1:] = state[comps]
        self.options = [[self._localize(o) for o in c.options] for c in choices]

    def _to_local(self, comps: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(self.comps, comps)
        idx = np.minimum(idx, max(len(self.comps) - 1, 0))
        found = (self.comps[idx] == comps) if len(self.comps) else np.zeros(comps.shape, bool)
        return np.where(found, idx + 1, 0).astype(np.int64)

    def _localize(self, option: Option) -> tuple[np.ndarray, np.ndarray]:
        return self._to_local(option.pairs).reshape(-1, 2), self._to_local(option.pins)

    def score(self, config: list[int]) -> tuple[int, int, int]:
        """(distinct open channels carried, number of open choices, minus the sum of option indices):
        higher is better. Counting channels, not only choices, rejects a configuration that keeps
        every choice open by merging all heads into one channel through a batch factor.
        """
        edges = [self.options[i][o][0] for i, o in enumerate(config)]
        pins = [self.options[i][o][1] for i, o in enumerate(config)]
        pairs = np.concatenate(edges) if edges else np.zeros((0, 2), np.int64)
        pin = np.concatenate(pins) if pins else np.zeros(0, np.int64)
        a = np.concatenate([pairs[:, 0], np.zeros(len(pin), np.int64)])
        b = np.concatenate([pairs[:, 1], pin])
        m = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(self.n, self.n))
        _, labels = connected_components(m, directed=False)
        useful = np.zeros(labels.max() + 1, dtype=bool)
        useful[labels[self.state]] = True  # only channels that hold a parameter can be pruned
        closed = ~useful
        closed[labels[0]] = True
        closed[labels[self.avoided]] = True
        opened = 0
        channels: set[int] = set()
        for i, o in enumerate(config):
            p = self.options[i][o][0]
            if not len(p):
                continue
            comps = labels[p[:, 0]]
            open_comps = comps[~closed[comps]]
            if len(open_comps):
                opened += 1
                channels.update(np.unique(open_comps).tolist())
        return len(channels), opened, -sum(config)


def _clusters(choices: Sequence[Choice], closed: np.ndarray, avoided: np.ndarray) -> list[list[int]]:
    """Indices of choices grouped by the open (or avoided) components they touch."""
    rows, cols = [], []
    for i, c in enumerate(choices):
        comps = np.unique(np.concatenate([np.concatenate([o.pairs.ravel(), o.pins]) for o in c.options]))
        comps = comps[~closed[comps] | avoided[comps]]
        rows += [i] * len(comps)
        cols += comps.tolist()
    if not rows:
        return [[i] for i in range(len(choices))]
    ucols, cidx = np.unique(np.asarray(cols), return_inverse=True)
    n = len(choices) + len(ucols)
    m = coo_matrix((np.ones(len(rows), np.int8), (np.asarray(rows), len(choices) + cidx)), shape=(n, n))
    _, labels = connected_components(m, directed=False)
    groups: dict[int, list[int]] = {}
    for i in range(len(choices)):
        groups.setdefault(int(labels[i]), []).append(i)
    return list(groups.values())


def choose(choices: Sequence[Choice], start: Sequence[int], stuck: Sequence[int], pinned: np.ndarray,
           avoided: np.ndarray, state: np.ndarray, max_moves: int = 64) -> tuple[list[int], int]:
    """An option per choice (improving on `start` where it leaves choices stuck), and the moves made.

    Args:
        choices: the choices, their options contracted onto the neutral solve's components.
        start: the starting option of each choice (its first open one, see `first_open`).
        stuck: indices of choices whose option carries fewer than two open channels in the `start`
            solution; only their clusters are searched.
        pinned: per neutral component, whether it is pinned there (it stays pinned).
        avoided: per neutral component, whether its channels should not be carried (e.g. head dims
            when whole heads are wanted).
        state: per neutral component, whether it holds a parameter atom (a channel that holds none
            cannot be pruned, so carrying it is worth nothing).

    """
    closed = pinned | avoided
    result = list(start)
    moves = 0
    stuck_set = set(stuck)
    for members in _clusters(choices, closed, avoided):
        if not stuck_set.intersection(members):
            continue
        cluster = _Cluster([choices[i] for i in members], closed, avoided, state)
        config = [start[i] for i in members]
        best = cluster.score(config)
        for _ in range(max_moves):
            move = None
            for trial in _moves(cluster, config):
                score = cluster.score(trial)
                if score > best:
                    best, move = score, trial
            if move is None and len(config) <= PAIR_SEARCH_LIMIT:
                for trial in _pair_moves(cluster, config):
                    score = cluster.score(trial)
                    if score > best:
                        best, move = score, trial
            if move is None:
                break
            config = move
            moves += 1
        for j, i in enumerate(members):
            result[i] = config[j]
    return result, moves


PAIR_SEARCH_LIMIT = 24
"""Clusters of at most this many choices also try changing two choices at once when no single
change helps (nn.MultiheadAttention with need_weights: the output merge and the weights' split by
heads must both leave the batch factor)."""


def _pair_moves(cluster: _Cluster, config: list[int]) -> list[list[int]]:
    """Every configuration with exactly two choices changed."""
    out: list[list[int]] = []
    n = len(config)
    for j1 in range(n):
        for j2 in range(j1 + 1, n):
            for o1 in range(len(cluster.choices[j1].options)):
                for o2 in range(len(cluster.choices[j2].options)):
                    if o1 != config[j1] and o2 != config[j2]:
                        trial = list(config)
                        trial[j1], trial[j2] = o1, o2
                        out.append(trial)
    return out


def _moves(cluster: _Cluster, config: list[int]) -> list[list[int]]:
    """Candidate configurations one step away: one choice changed; every choice of one kind set to
    the same option (q, k and v must agree on the heads factor); every stuck choice advanced.
    """
    out: list[list[int]] = []
    kinds: dict[Hashable, list[int]] = {}
    for j, c in enumerate(cluster.choices):
        kinds.setdefault(c.kind if c.kind is not None else ("single", j), []).append(j)
        for o in range(len(c.options)):
            if o != config[j]:
                out.append([*config[:j], o, *config[j + 1:]])
    for members in kinds.values():
        if len(members) < 2:
            continue
        for o in range(len(cluster.choices[members[0]].options)):
            trial = list(config)
            for j in members:
                trial[j] = o
            if trial != config:
                out.append(trial)
    advanced = [(o + 1) % len(c.options) for o, c in zip(config, cluster.choices, strict=True)]
    out.append(advanced)
    return out
