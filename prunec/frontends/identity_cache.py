"""Memoizing a function of one object by the object's identity."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def cached_by_identity(make: Callable[[Any], T]) -> Callable[[Any], T]:
    """`make`, computed once per argument object and found by `id`: an op overload hashes in Python,
    which costs more than the lookup. Each object is kept beside its value, so its id cannot pass
    to another object."""
    items: dict[int, tuple[Any, T]] = {}

    @functools.wraps(make)
    def cached(obj: Any) -> T:
        known = items.get(id(obj))
        if known is None or known[0] is not obj:
            known = items[id(obj)] = (obj, make(obj))
        return known[1]

    return cached
