"""Tracing runs the model's forward; whatever Python state that forward changes is put back.

Recording is an eager forward in eval mode, and model code may keep Python state there: timm's LeViT
fills `attention_bias_cache` with tensors gathered from its parameters, other models set flags or
count calls. Left behind, such state would change the user's model (analysis must not) and, copied
into a pruned model, hold tensors of the old sizes. So the attributes of every module whose class is
not torch's own are snapshotted before tracing and restored after it: attributes added are removed,
rebound ones rebound, and plain dicts, lists and sets changed in place get their contents back.

The module tree and state (`_modules`, `_parameters`, `_buffers`) are left alone: the recording
restores what it swaps there itself, and a forward that registers new state makes a different
model, which the trace then describes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from prunec.frontends.model_index import ModelIndex

_CONTAINERS = (dict, list, set)
_STRUCTURE = frozenset({"_modules", "_parameters", "_buffers"})
_MISSING = object()


def _snapshot(module: torch.nn.Module) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the attribute dict, shallow copies of its plain containers)."""
    attrs = dict(module.__dict__)
    contents = {k: v.copy() for k, v in attrs.items() if type(v) in _CONTAINERS and k not in _STRUCTURE}
    return attrs, contents


def _restore(module: torch.nn.Module, attrs: dict[str, Any], contents: dict[str, Any]) -> None:
    now = module.__dict__
    for k in [k for k in now if k not in attrs and k not in _STRUCTURE]:
        del now[k]
    for k, v in attrs.items():
        if k in _STRUCTURE:
            continue
        if now.get(k, _MISSING) is not v:
            now[k] = v
        before = contents.get(k)
        if before is not None and _changed(v, before):
            if type(v) is list:
                v[:] = before
            else:
                v.clear()
                v.update(before)


def _changed(now: Any, before: Any) -> bool:
    """Whether a container's contents differ from its copy, by identity (`==` on tensors is no
    truth value)."""
    if len(now) != len(before):
        return True
    if type(now) is dict:
        return any(before.get(k, _MISSING) is not x for k, x in now.items())
    if type(now) is list:
        return any(a is not b for a, b in zip(now, before))
    return not all(x in before for x in now)  # a set: its elements hash by identity or by value


def _own_code(module: torch.nn.Module) -> bool:
    """Whether the module's class comes from outside torch (torch's own modules keep no state in
    forward worth restoring, and skipping them keeps this cheap on large plain models)."""
    return not type(module).__module__.startswith("torch.")


@contextlib.contextmanager
def python_state_kept(index: ModelIndex) -> Iterator[None]:
    """Restore, on exit, the Python attributes of every non-torch module of the indexed model."""
    saved = [(m, *_snapshot(m)) for _, m in index.modules if _own_code(m)]
    try:
        yield
    finally:
        for m, attrs, contents in saved:
            _restore(m, attrs, contents)
