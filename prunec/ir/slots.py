"""Slots (one axis of one value) and channel maps: the vocabulary op rules couple channels with.

A parameter is a value like any other (kind PARAM), so ``Slot("conv1.weight", 0)`` is conv1's filters
and ``Slot("relu_3", 1)`` the channel axis of an activation. A `Coupling` says that two slots keep or
drop channels together, related index by index by a `ChannelMap`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Slot:
    """One axis of one value: the unit that op rules couple."""

    value: str
    axis: int

    def __str__(self) -> str:
        return f"{self.value}[{self.axis}]"


class ChannelMap:
    """How index i of slot `a` relates to indices of slot `b`. Subclasses are frozen and printable."""

    def pairs(self, size_a: int, size_b: int) -> tuple[np.ndarray, np.ndarray]:
        """Index pairs (ia, ib) that must stay or go together."""
        raise NotImplementedError


@dataclass(frozen=True)
class Identity(ChannelMap):
    """a[i] <-> b[i]; both slots have the same size."""

    def pairs(self, size_a: int, size_b: int) -> tuple[np.ndarray, np.ndarray]:
        n = min(size_a, size_b)
        idx = np.arange(n, dtype=np.int64)
        return idx, idx

    def __str__(self) -> str:
        return "identity"


@dataclass(frozen=True)
class Offset(ChannelMap):
    """a[i] <-> b[i + start]: a part of a concat/split/slice inside the whole."""

    start: int

    def pairs(self, size_a: int, size_b: int) -> tuple[np.ndarray, np.ndarray]:
        ia = np.arange(size_a, dtype=np.int64)
        return ia, ia + self.start

    def __str__(self) -> str:
        return f"offset({self.start})"


@dataclass(frozen=True)
class Strided(ChannelMap):
    """a[i] <-> b[start + i * step]: a strided slice."""

    start: int
    step: int

    def pairs(self, size_a: int, size_b: int) -> tuple[np.ndarray, np.ndarray]:
        ia = np.arange(size_a, dtype=np.int64)
        return ia, self.start + ia * self.step

    def __str__(self) -> str:
        return f"strided({self.start}, {self.step})"


@dataclass(frozen=True)
class Block(ChannelMap):
    """a[i] <-> b[i*size : (i+1)*size]: flatten (C,H,W)->C*HW, heads, GQA groups."""

    size: int

    def pairs(self, size_a: int, size_b: int) -> tuple[np.ndarray, np.ndarray]:
        ib = np.arange(size_a * self.size, dtype=np.int64)
        return ib // self.size, ib

    def __str__(self) -> str:
        return f"block({self.size})"


@dataclass(frozen=True)
class Digit(ChannelMap):
    """a[i] <-> b[digit]: `a` is an axis of size prod(factors) split (or merged) into `factors`,
    `b` is the factor axis at `position`; i's digit there is (i // prod(inner factors)) % factor."""

    factors: tuple[int, ...]
    position: int

    def pairs(self, size_a: int, size_b: int) -> tuple[np.ndarray, np.ndarray]:
        ia = np.arange(int(np.prod(self.factors)), dtype=np.int64)
        inner = int(np.prod(self.factors[self.position + 1:], dtype=np.int64))
        return ia, (ia // inner) % self.factors[self.position]

    def __str__(self) -> str:
        return f"digit({'x'.join(map(str, self.factors))}, {self.position})"


@dataclass(frozen=True)
class Tile(ChannelMap):
    """a[i] <-> b[i + k*size_a] for every k: a tensor repeated along the axis."""

    times: int

    def pairs(self, size_a: int, size_b: int) -> tuple[np.ndarray, np.ndarray]:
        ib = np.arange(size_a * self.times, dtype=np.int64)
        return ib % size_a, ib

    def __str__(self) -> str:
        return f"tile({self.times})"


@dataclass(frozen=True)
class Explicit(ChannelMap):
    """Arbitrary pairs: a[ia[k]] <-> b[ib[k]] (permutations, gathers, reshape digits)."""

    ia: tuple[int, ...]
    ib: tuple[int, ...]
    label: str = field(default="explicit", compare=False)

    @classmethod
    def from_arrays(cls, ia: np.ndarray, ib: np.ndarray, label: str = "explicit") -> Explicit:
        """Build from two equal-length integer arrays."""
        return cls(tuple(int(i) for i in ia), tuple(int(i) for i in ib), label)

    def pairs(self, size_a: int, size_b: int) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.ia, dtype=np.int64), np.asarray(self.ib, dtype=np.int64)

    def __str__(self) -> str:
        return self.label


@dataclass(frozen=True)
class ArrayMap(ChannelMap):
    """Like Explicit but holding numpy arrays (no per-element Python objects: big reshapes)."""

    ia: np.ndarray = field(compare=False)
    ib: np.ndarray = field(compare=False)
    label: str = "array"

    def pairs(self, size_a: int, size_b: int) -> tuple[np.ndarray, np.ndarray]:
        return self.ia, self.ib

    def __str__(self) -> str:
        return self.label


@dataclass(frozen=True)
class Coupling:
    """`a` and `b` keep or drop the same channels, related by `map`."""

    a: Slot
    b: Slot
    map: ChannelMap = field(default_factory=Identity)

    def __str__(self) -> str:
        return f"{self.a} ~ {self.b} ({self.map})"
