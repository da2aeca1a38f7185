"""Pass registry: stable kebab-case names -> pass classes, with where each came from."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from prunec.errors import RuleConflictError
from prunec.pipeline.pass_base import Pass

P = TypeVar("P", bound=type)


@dataclass(frozen=True)
class PassEntry:
    """A registered pass class and its source."""

    name: str
    cls: type[Pass]
    source: str


PASSES: dict[str, PassEntry] = {}


def _source(obj: object) -> str:
    try:
        return f"{inspect.getsourcefile(obj)}:{inspect.getsourcelines(obj)[1]}"  # type: ignore[arg-type]
    except (TypeError, OSError):
        return getattr(obj, "__module__", "?")


def register_pass(name: str, *, override: bool = False) -> Callable[[P], P]:
    """Class decorator: register a Pass subclass under `name` (used in textual pipelines)."""
    def wrap(cls: P) -> P:
        if not (isinstance(cls, type) and issubclass(cls, Pass)):
            raise TypeError(f"@register_pass({name!r}) must decorate a Pass subclass, got {cls!r}")
        src = _source(cls)
        old = PASSES.get(name)
        if old is not None and not override and old.cls is not cls:
            raise RuleConflictError(f"pass name {name!r} is taken by {old.cls.__qualname__} from "
                                    f"{old.source}; the new one is {cls.__qualname__} from {src}. "
                                    "Pick another name or pass override=True.")
        cls.name = name  # type: ignore[attr-defined]  # ClassVar set once at registration
        PASSES[name] = PassEntry(name, cls, src)  # type: ignore[arg-type]
        return cls
    return wrap


def providers_of(artifact: object) -> list[str]:
    """Names of registered passes that provide `artifact`."""
    return sorted(n for n, e in PASSES.items() if artifact in e.cls.provides)
