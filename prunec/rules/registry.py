"""RuleRegistry: op key -> rule, with where each rule was defined; clashes are errors."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prunec.errors import PluginError, RuleConflictError
from prunec.rules.api import Rule
from prunec.sources import describe_source


@dataclass(frozen=True)
class RuleEntry:
    """A registered rule and where it came from (file:line, or a plugin name)."""

    key: str
    rule: Rule
    source: str


def autograd_key(cls: type) -> str:
    """Op key of a torch.autograd.Function subclass: 'autograd::<module>.<QualName>'."""
    return f"autograd::{cls.__module__}.{cls.__qualname__}"


def _object_key(op: object) -> str:
    """Key of a torch op object: an autograd.Function class, a torch.library op or overload."""
    import torch

    if isinstance(op, type) and issubclass(op, torch.autograd.Function):
        return autograd_key(op)
    for attr in ("_qualname", "_qualified_op_name"):  # torch.library CustomOpDef, OpOverloadPacket
        if isinstance(getattr(op, attr, None), str):
            return str(getattr(op, attr))
    schema = getattr(op, "_schema", None)  # OpOverload
    if schema is not None:
        return str(schema.name)
    raise PluginError(
        f"cannot use {op!r} as an op key; pass a name such as 'mylib::fused_op', a torch.library op "
        "(torch.ops.mylib.fused_op) or a torch.autograd.Function subclass")


def normalize_key(key: object) -> str:
    """Canonical op key 'namespace::name'; 'aten.conv2d' and 'aten::conv2d' are the same key.

    Torch objects are accepted too: `torch.ops.mylib.op` (or its overloads, or the op that
    `torch.library.custom_op` returns) gives 'mylib::op'; an autograd.Function subclass gives
    'autograd::<module>.<QualName>'.
    """
    if not isinstance(key, str):
        return _object_key(key)
    if "::" in key:
        return key
    ns, dot, name = key.partition(".")
    return f"{ns}::{name}" if dot else key


def _source_of(fn: Callable[..., object], depth: int = 3) -> str:
    try:
        code = fn.__code__  # type: ignore[attr-defined]  # plain functions have it
        return f"{code.co_filename}:{code.co_firstlineno}"
    except AttributeError:
        frame = inspect.stack()[depth]
        return f"{frame.filename}:{frame.lineno}"


class RuleRegistry:
    """Maps op keys ('aten.conv2d', 'onnx::Conv', 'mylib::fused') to rules."""

    def __init__(self) -> None:
        self._rules: dict[str, RuleEntry] = {}
        self._view_like: set[str] = set()

    def register(self, keys: tuple[object, ...], rule: Rule, *, override: bool = False,
                 source: str | None = None) -> None:
        """Register `rule` for every key; a second rule for a key raises unless `override`."""
        src = source or _source_of(rule)
        normalized = [normalize_key(k) for k in keys]
        for key in normalized:  # check every key first: a clash registers nothing
            old = self._rules.get(key)
            if old is not None and not override:
                raise RuleConflictError(
                    f"op {key!r} already has a rule from {describe_source(old.source)}; the new one is "
                    f"from {describe_source(src)}. Pass override=True to replace it on purpose.")
        for key in normalized:
            self._rules[key] = RuleEntry(key, rule, src)

    def get(self, key: object) -> RuleEntry | None:
        """The rule for `key`, or None."""
        return self._rules.get(normalize_key(key))

    def mark_view_like(self, *keys: str) -> None:
        """Declare ops whose output is a pure re-arrangement of input 0 (a view of a parameter
        stays 'a parameter' for rules that ask `TensorView.is_param`)."""
        self._view_like.update(normalize_key(k) for k in keys)

    def is_view_like(self, key: str) -> bool:
        """Whether `key` was declared view-like."""
        return key in self._view_like

    def unregister(self, key: object) -> None:
        """Remove the rule for `key` (tests and plugins that scope a rule)."""
        self._rules.pop(normalize_key(key), None)

    def snapshot(self) -> tuple[dict[str, RuleEntry], frozenset[str]]:
        """The current table, for `restore` (tests and tools that register rules temporarily)."""
        return dict(self._rules), frozenset(self._view_like)

    def restore(self, snapshot: tuple[dict[str, RuleEntry], frozenset[str]]) -> None:
        """Put back a table taken with `snapshot`."""
        self._rules = dict(snapshot[0])
        self._view_like = set(snapshot[1])

    def __contains__(self, key: object) -> bool:
        return normalize_key(key) in self._rules

    def __iter__(self) -> Iterator[RuleEntry]:
        return iter(sorted(self._rules.values(), key=lambda e: e.key))

    def __len__(self) -> int:
        return len(self._rules)


RULES = RuleRegistry()
"""The registry every analysis uses unless given another."""


def op_rule(*keys: object, override: bool = False, registry: RuleRegistry | None = None
            ) -> Callable[[Rule], Rule]:
    """Decorator: register a rule for op keys (names, torch.library ops or autograd.Function classes).

    Example::

        @op_rule("mylib::scale")
        def scale(node):
            x, y = node.input(0), node.output(0)
            return [couple(x.axis(k), y.axis(k)) for k in range(x.rank)]
    """
    def wrap(fn: Rule) -> Rule:
        (registry if registry is not None else RULES).register(keys, fn, override=override,
                                                               source=_source_of(fn))
        return fn
    return wrap
