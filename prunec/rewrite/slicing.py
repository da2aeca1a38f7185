"""Slicing tensors and assigning them back into modules (shared by every torch rewrite)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch


def slice_tensor(t: torch.Tensor, kept: Mapping[int, np.ndarray]) -> torch.Tensor:
    """Keep only `kept[axis]` indices along each listed axis (a new, contiguous tensor)."""
    out = t.detach()
    for axis, idx in sorted(kept.items()):
        index = torch.as_tensor(np.asarray(idx, dtype=np.int64), device=t.device)
        out = out.index_select(axis, index)
    return out.clone().contiguous() if out.data_ptr() == t.data_ptr() else out.contiguous()


def owner_and_attr(root: torch.nn.Module, dotted: str) -> tuple[torch.nn.Module, str]:
    """The module holding `dotted` ('layer1.0.conv1.weight') and the attribute name."""
    path, _, attr = dotted.rpartition(".")
    return (root.get_submodule(path) if path else root), attr


def get_state(root: torch.nn.Module, dotted: str) -> torch.Tensor:
    """A parameter or buffer by its state_dict name."""
    owner, attr = owner_and_attr(root, dotted)
    t = owner._parameters.get(attr)
    if t is None:
        t = owner._buffers.get(attr)
    if t is None:
        t = getattr(owner, attr)
    return t


def set_state(root: torch.nn.Module, dotted: str, value: torch.Tensor) -> None:
    """Replace a parameter (keeping it a Parameter) or a buffer by its state_dict name."""
    owner, attr = owner_and_attr(root, dotted)
    if attr in owner._parameters:
        old = owner._parameters[attr]
        req = old.requires_grad if old is not None else True
        owner._parameters[attr] = value if isinstance(value, torch.nn.Parameter) else torch.nn.Parameter(
            value, requires_grad=req)
    elif attr in owner._buffers:
        owner._buffers[attr] = value
    else:
        setattr(owner, attr, value)
