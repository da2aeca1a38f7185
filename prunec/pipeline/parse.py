"""Textual pipelines: 'l2,select-uniform{ratio=0.5,round_to=8},rewrite-module,verify'."""

from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any

from prunec.errors import PipelineSyntaxError
from prunec.pipeline.pass_base import Pass
from prunec.pipeline.registry import PASSES


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


def _convert(value: str, annotation: Any) -> Any:
    text = value.strip()
    ann = str(annotation)
    if "bool" in ann and text.lower() in ("true", "false", "1", "0", "yes", "no"):
        return text.lower() in ("true", "1", "yes")
    if "int" in ann and "float" not in ann:
        try:
            return int(text)
        except ValueError:
            pass
    if "float" in ann:
        try:
            return float(text)
        except ValueError:
            pass
    if text.lower() == "none":
        return None
    return text


def make_pass(name: str, options: dict[str, str]) -> Pass:
    """Instantiate a registered pass (or a criterion as a scoring pass) with textual options."""
    from prunec.scoring import CRITERIA, ScoreGroupsPass

    if name in PASSES:
        cls: Any = PASSES[name].cls
        target_cls, wrap_criterion = cls, False
    elif name in CRITERIA:
        target_cls, wrap_criterion = CRITERIA[name].cls, True
    else:
        raise PipelineSyntaxError(f"unknown pass {name!r}")
    fields = {f.name: f for f in dataclasses.fields(target_cls)} if dataclasses.is_dataclass(target_cls) else {}
    hints = typing.get_type_hints(target_cls) if fields else {}
    kwargs: dict[str, Any] = {}
    for key, raw in options.items():
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; options are {sorted(fields)}"
            raise PipelineSyntaxError(f"pass {name!r} has no option {key!r}{hint}")
        kwargs[key] = _convert(raw, hints.get(key, str))
    if wrap_criterion:
        return ScoreGroupsPass(criterion=target_cls(**kwargs))
    return target_cls(**kwargs)


def parse_pipeline(text: str) -> list[Pass]:
    """Parse a comma-separated pipeline; unknown names are reported together with close matches."""
    from prunec.scoring import CRITERIA

    steps: list[tuple[str, dict[str, str]]] = []
    for part in _split_top(text):
        name, _, rest = part.partition("{")
        name = name.strip()
        opts: dict[str, str] = {}
        if rest:
            if not rest.endswith("}"):
                raise PipelineSyntaxError(f"options of {name!r} must end with '}}': {part!r}")
            for item in _split_top(rest[:-1]):
                key, eq, value = item.partition("=")
                if not eq:
                    raise PipelineSyntaxError(f"option {item!r} of {name!r} must look like key=value")
                opts[key.strip()] = value
        steps.append((name, opts))
    known = sorted(set(PASSES) | set(CRITERIA))
    unknown = [n for n, _ in steps if n not in PASSES and n not in CRITERIA]
    if unknown:
        msgs = []
        for n in unknown:
            close = difflib.get_close_matches(n, known, n=1)
            msgs.append(f"{n!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise PipelineSyntaxError(f"unknown pass(es) {', '.join(msgs)}; known: {', '.join(known)}")
    return [make_pass(n, o) for n, o in steps]
