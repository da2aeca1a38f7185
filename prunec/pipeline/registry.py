"""Pass registry: stable kebab-case names -> pass classes, with where each came from.

Pass names and criterion names share one namespace (a textual pipeline may name either), so a
pass may not take a criterion's name and the other way round. Clashes are errors that name both
definitions, unless `override=True`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from prunec.errors import PluginError, RuleConflictError
from prunec.pipeline.pass_base import Pass
from prunec.pipeline.state import Artifact
from prunec.sources import describe_source, source_of

P = TypeVar("P", bound=type)

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


@dataclass(frozen=True)
class PassEntry:
    """A registered pass class and its source ('file:line')."""

    name: str
    cls: type[Pass]
    source: str


PASSES: dict[str, PassEntry] = {}


def _source(obj: object) -> str:
    """Kept for modules that imported the old private name; use prunec.sources.source_of."""
    return source_of(obj)


def check_name(kind: str, name: object, cls: type) -> str:
    """Validate a registration name: a kebab-case string such as 'select-global'."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise PluginError(f"cannot register {kind} {cls.__qualname__} as {name!r}: names are kebab-case "
                          "strings such as 'select-global' or 'l2' (lowercase letters, digits, '-')")
    return name


def check_unclaimed(kind: str, name: str, cls: type, source: str, override: bool) -> None:
    """Raise RuleConflictError if `name` is taken by another pass or criterion."""
    from prunec.scoring import CRITERIA

    for other_kind, table in (("pass", PASSES), ("criterion", CRITERIA)):
        old = table.get(name)
        if old is None or old.cls is cls or (override and other_kind == kind):
            continue
        how = "Pick another name" + (" or pass override=True" if other_kind == kind else "")
        raise RuleConflictError(
            f"{kind} name {name!r} is already taken by {other_kind} {old.cls.__qualname__} from "
            f"{describe_source(old.source)}; the new {kind} {cls.__qualname__} is from "
            f"{describe_source(source)}. {how}.")


def _check_pass_class(name: str, cls: Any) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Pass)):
        raise PluginError(f"@register_pass({name!r}) must decorate a subclass of prunec.Pass, got {cls!r}")
    if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise PluginError(
            f"pass {cls.__qualname__} ({name!r}) must be a frozen dataclass: its fields are its options. "
            "Write @register_pass(...) above @dataclass(frozen=True).")
    for attr in ("requires", "provides", "modifies"):
        declared = getattr(cls, attr)
        if not isinstance(declared, frozenset) or not all(isinstance(a, Artifact) for a in declared):
            raise PluginError(
                f"pass {cls.__qualname__} ({name!r}) declares {attr} = {declared!r}; it must be a frozenset "
                "of prunec.Artifact, e.g. frozenset({Artifact.ANALYSIS, Artifact.SCORES})")


def register_pass(name: str, *, override: bool = False) -> Callable[[P], P]:
    """Class decorator: register a Pass under `name`, the key textual pipelines use.

    The class must be a frozen dataclass (its fields are its options) with `requires` and
    `provides` frozensets of Artifact. A name already used by another pass or by a criterion
    raises RuleConflictError naming both definitions, unless `override=True` (passes only).

    Example::

        @register_pass("keep-all")
        @dataclass(frozen=True)
        class KeepAll(Pass):
            requires: ClassVar = frozenset({Artifact.ANALYSIS})
            provides: ClassVar = frozenset({Artifact.MASKS})

            def run(self, state):
                return PassResult(state.replace(masks={}), changed=False)
    """
    def wrap(cls: P) -> P:
        check_name("pass", name, cls)
        _check_pass_class(name, cls)
        src = source_of(cls)
        check_unclaimed("pass", name, cls, src, override)
        cls.name = name  # type: ignore[attr-defined]  # ClassVar set once at registration
        PASSES[name] = PassEntry(name, cls, src)  # type: ignore[arg-type]
        return cls
    return wrap


def providers_of(artifact: object) -> list[str]:
    """Names usable in a pipeline that provide `artifact`: criteria first (each is a scoring pass
    under its own name), then passes."""
    from prunec.scoring import CRITERIA, ScoreGroupsPass

    criteria = sorted(CRITERIA) if artifact in ScoreGroupsPass.provides else []
    return criteria + sorted(n for n, e in PASSES.items() if artifact in e.cls.provides)
