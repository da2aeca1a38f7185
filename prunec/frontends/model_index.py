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
        seen_tensors: set[int] = set()
        parameters: list[tuple[str, torch.Tensor]] = []
        buffers: list[tuple[str, torch.Tensor]] = []
        state: list[tuple[str, torch.Tensor]] | None = []
        base_save = torch.nn.Module._save_to_state_dict
        for prefix, m in every:
            dot = prefix + "." if prefix else ""
            params, bufs = m._parameters, m._buffers
            if id(m) not in seen_modules:
                seen_modules.add(id(m))
                modules.append((prefix, m))
                # a tensor's first name: a later path of the same module only repeats names already seen
                for k, t in params.items():
                    if t is not None and id(t) not in seen_tensors:
                        seen_tensors.add(id(t))
                        parameters.append((dot + k, t))
            if state is None:
                continue
            if (type(m)._save_to_state_dict is not base_save or m._state_dict_hooks
                    or getattr(m, "_state_dict_pre_hooks", None)):
                state = None  # the module customizes what it saves: ask state_dict itself below
                continue
            state += [(dot + k, t) for k, t in params.items() if t is not None]
            if bufs:
                skip = m._non_persistent_buffers_set
                state += [(dot + k, t) for k, t in bufs.items() if t is not None and k not in skip]
        seen_tensors.clear()
        for prefix, m in modules:  # buffers after parameters: named_buffers() dedups on its own
            if m._buffers:
                dot = prefix + "." if prefix else ""
                for k, t in m._buffers.items():
                    if t is not None and id(t) not in seen_tensors:
                        seen_tensors.add(id(t))
                        buffers.append((dot + k, t))
        if state is None:
            state = list(model.state_dict(keep_vars=True).items())
        return cls(modules, parameters, buffers, state)


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
