"""Textual pipelines: 'l2,select-uniform{ratio=0.5,round_to=8},rewrite-module,verify'.

A pipeline is a comma-separated list of registered pass or criterion names (a criterion becomes a
scoring pass), each optionally followed by `{option=value,...}`. Option values are converted to the
type of the dataclass field they set; anything else is an error that says what was expected.
`format_pipeline` writes the text back (options that differ from their defaults only).
"""

from __future__ import annotations

import builtins
import dataclasses
import difflib
import sys
import types
import typing
from collections.abc import Sequence
from typing import Any

from prunec.errors import PipelineSyntaxError
from prunec.pipeline.pass_base import Pass
from prunec.pipeline.registry import PASSES

_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def _split_top(text: str, sep: str = ",") -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                raise PipelineSyntaxError(f"unbalanced '}}' in pipeline {text!r}")
        if ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth != 0:
        raise PipelineSyntaxError(f"unbalanced '{{' in pipeline {text!r}")
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _choices(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _type_name(annotation: Any) -> str:
    names = []
    for t in _choices(annotation):
        if typing.get_origin(t) is typing.Literal:
            names.append(" or ".join(repr(v) for v in typing.get_args(t)))
        else:
            names.append("none" if t is type(None) else getattr(t, "__name__", str(t)))
    return " or ".join(names)


def convert_option(owner: str, key: str, text: str, annotation: Any) -> Any:
    """Convert the text of one option to its field's type, or raise PipelineSyntaxError."""
    text = text.strip()
    for t in _choices(annotation):
        if t is type(None) and text.lower() == "none":
            return None
        if t is bool and text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
        if t is int and text.lstrip("+-").isdigit():
            return int(text)
        if t is float:
            try:
                return float(text)
            except ValueError:
                continue
        if typing.get_origin(t) is typing.Literal and text in [str(v) for v in typing.get_args(t)]:
            return next(v for v in typing.get_args(t) if str(v) == text)
        if t is str or t is Any:
            return text
    raise PipelineSyntaxError(f"option {key!r} of {owner!r} expects {_type_name(annotation)}, got {text!r}")


def _target_class(name: str) -> tuple[type, bool]:
    from prunec.scoring import CRITERIA

    if name in PASSES:
        return PASSES[name].cls, False
    if name in CRITERIA:
        return CRITERIA[name].cls, True
    raise PipelineSyntaxError(_unknown_message([name]))


def _options_of(cls: type) -> dict[str, Any]:
    """Option name -> type annotation (the dataclass fields that __init__ takes)."""
    if not dataclasses.is_dataclass(cls):
        return {}
    fields = [f for f in dataclasses.fields(cls) if f.init]
    try:
        hints = typing.get_type_hints(cls)
    except NameError:  # string annotations naming something local: resolve field by field
        hints = {f.name: _resolve(cls, f.type) for f in fields}
    return {f.name: hints.get(f.name, Any) for f in fields}


def _resolve(cls: type, annotation: Any) -> Any:
    """An annotation, evaluated if it is a string; Any (plain text) if it cannot be."""
    if not isinstance(annotation, str):
        return annotation
    module = sys.modules.get(cls.__module__)
    try:
        return eval(annotation, {**vars(typing), **vars(builtins), **(vars(module) if module else {})})
    except Exception:  # noqa: BLE001 - an unresolvable annotation means "take the text as is"
        return Any


def make_pass(name: str, options: dict[str, str]) -> Pass:
    """Instantiate a registered pass (or a criterion as a scoring pass) with textual options."""
    from prunec.scoring import ScoreGroupsPass

    cls, is_criterion = _target_class(name)
    fields = _options_of(cls)
    kwargs: dict[str, Any] = {}
    for key, raw in options.items():
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; its options are {sorted(fields)}"
            raise PipelineSyntaxError(f"pass {name!r} has no option {key!r}{hint}")
        kwargs[key] = convert_option(name, key, raw, fields[key])
    if is_criterion:
        return ScoreGroupsPass(criterion=cls(**kwargs))
    return cls(**kwargs)


def _unknown_message(unknown: Sequence[str]) -> str:
    from prunec.scoring import CRITERIA

    known = sorted(set(PASSES) | set(CRITERIA))
    msgs = []
    for n in unknown:
        close = difflib.get_close_matches(n, known, n=1)
        msgs.append(f"{n!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return (f"unknown pass(es) {', '.join(msgs)}; known: {', '.join(known)}. Register your own with "
            "@prunec.register_pass or @prunec.register_criterion, or install the plugin that has it.")


def _parse_step(part: str) -> tuple[str, dict[str, str]]:
    name, brace, rest = part.partition("{")
    name = name.strip()
    opts: dict[str, str] = {}
    if not name:
        raise PipelineSyntaxError(f"pipeline step {part!r} has options but no pass name")
    if not brace:
        return name, opts
    if not rest.endswith("}"):
        raise PipelineSyntaxError(f"options of {name!r} must end with '}}': {part!r}")
    for item in _split_top(rest[:-1]):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise PipelineSyntaxError(f"option {item!r} of {name!r} must look like key=value")
        if key in opts:
            raise PipelineSyntaxError(f"option {key!r} of {name!r} is given twice")
        opts[key] = value
    return name, opts


def parse_pipeline(spec: str | Sequence[str | Pass]) -> list[Pass]:
    """Passes from text ('l2,select-uniform{ratio=0.5},rewrite-module,verify') or from a list.

    A list may mix step texts ('select-uniform{ratio=0.5}') and Pass instances. Unknown names are
    reported together, each with its closest known name.

    Raises:
        PipelineSyntaxError: empty pipeline, bad syntax, unknown names, unknown or ill-typed options.

    """
    from prunec.scoring import CRITERIA

    items: list[str | Pass] = list(_split_top(spec)) if isinstance(spec, str) else list(spec)
    if not items:
        raise PipelineSyntaxError("the pipeline is empty; name at least one pass, e.g. "
                                  "'l2,select-uniform{ratio=0.5},rewrite-module,verify'")
    steps: list[tuple[str, dict[str, str]] | Pass] = []
    for item in items:
        if isinstance(item, Pass):
            steps.append(item)
        elif isinstance(item, str):
            steps.append(_parse_step(item.strip()))
        else:
            raise PipelineSyntaxError(f"pipeline item {item!r} ({type(item).__name__}) is neither a step "
                                      "text nor a Pass instance")
    unknown = [s[0] for s in steps if isinstance(s, tuple) and s[0] not in PASSES and s[0] not in CRITERIA]
    if unknown:
        raise PipelineSyntaxError(_unknown_message(unknown))
    return [s if isinstance(s, Pass) else make_pass(*s) for s in steps]


def _format_options(obj: object) -> str:
    if not dataclasses.is_dataclass(obj):
        return ""
    parts = []
    for f in dataclasses.fields(obj):
        if not f.init:
            continue
        value = getattr(obj, f.name)
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
        if value != default:
            parts.append(f"{f.name}={value}")
    return "{" + ",".join(parts) + "}" if parts else ""


def format_pipeline(passes: Sequence[Pass]) -> str:
    """The text of a pipeline; a scoring pass with a registered criterion is written by its name."""
    out = []
    for p in passes:
        crit = getattr(p, "criterion", None)
        if getattr(crit, "name", "") and dataclasses.is_dataclass(crit) and not isinstance(crit, type):
            out.append(crit.name + _format_options(crit))
        else:
            out.append(p.key + _format_options(p))
    return ",".join(out)
