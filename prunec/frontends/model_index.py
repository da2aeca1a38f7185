"""One walk over a model's module tree, shared by every step of tracing that needs it."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ModelIndex:
    """What `named_modules()`, `named_parameters()`, `named_buffers()` and
    `state_dict(keep_vars=True)` would return, from a single walk (each of those walks the whole
    tree through generators, which is most of a large model's tracing overhead)."""

    modules: list[tuple[str, torch.nn.Module]]
    """named_modules(): each module once, by its first path."""
    parameters: list[tuple[str, torch.Tensor]]
    """named_parameters(): each tensor once, by its first name."""
    buffers: list[tuple[str, torch.Tensor]]
    """named_buffers(): each tensor once, by its first name (non-persistent ones included)."""
    state: list[tuple[str, torch.Tensor]]
    """state_dict(keep_vars=True).items(): every name of every persistent tensor."""

    @classmethod
    def of(cls, model: torch.nn.Module) -> ModelIndex:
        """Index `model`."""
        every = _walk(model)
        seen_modules: set[int] = set()
        modules = []
        for name, m in every:
            if id(m) not in seen_modules:
                seen_modules.add(id(m))
                modules.append((name, m))
        parameters, buffers = _unique(modules, "_parameters"), _unique(modules, "_buffers")
        return cls(modules, parameters, buffers, _state(model, every))


def _unique(modules: list[tuple[str, torch.nn.Module]], store: str) -> list[tuple[str, torch.Tensor]]:
    seen: set[int] = set()
    out = []
    for prefix, m in modules:
        for k, t in getattr(m, store).items():
            if t is not None and id(t) not in seen:
                seen.add(id(t))
                out.append((f"{prefix}.{k}" if prefix else k, t))
    return out


def _state(model: torch.nn.Module, every: list[tuple[str, torch.nn.Module]]) -> list[tuple[str, torch.Tensor]]:
    """state_dict's entries, read off the stores unless a module customizes what it saves."""
    base = torch.nn.Module._save_to_state_dict
    out: list[tuple[str, torch.Tensor]] = []
    for prefix, m in every:
        if (type(m)._save_to_state_dict is not base or m._state_dict_hooks
                or getattr(m, "_state_dict_pre_hooks", None)):
            return list(model.state_dict(keep_vars=True).items())
        dot = prefix + "." if prefix else ""
        out += [(dot + k, t) for k, t in m._parameters.items() if t is not None]
        out += [(dot + k, t) for k, t in m._buffers.items()
                if t is not None and k not in m._non_persistent_buffers_set]
    return out


def _walk(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """named_modules(remove_duplicate=False), as a loop instead of nested generators (whose cost
    grows with the depth of every module yielded)."""
    base = torch.nn.Module.named_modules
    out: list[tuple[str, torch.nn.Module]] = []
    stack: list[tuple[str, torch.nn.Module]] = [("", model)]
    while stack:
        prefix, m = stack.pop()
        if type(m).named_modules is not base:  # a class walks its own way: ask it
            return list(model.named_modules(remove_duplicate=False))
        out.append((prefix, m))
        children = m._modules
        if children:
            dot = prefix + "." if prefix else ""
            stack += reversed([(dot + k, c) for k, c in children.items() if c is not None])
    return out
