"""Example inputs: normalizing what users pass, and drawing fresh inputs of the same shapes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from prunec.errors import InputError

ExampleInputsLike = Any
"""A tensor, a tuple/list of positional arguments, or a dict of keyword arguments."""


@dataclass(frozen=True)
class ExampleInputs:
    """Positional and keyword arguments for one forward call."""

    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_user(cls, example_inputs: ExampleInputsLike) -> ExampleInputs:
        """Accept a tensor, a tuple/list of positional args, or a dict of keyword args."""
        if isinstance(example_inputs, ExampleInputs):
            return example_inputs
        if isinstance(example_inputs, torch.Tensor):
            return cls((example_inputs,), {})
        if isinstance(example_inputs, (tuple, list)):
            return cls(tuple(example_inputs), {})
        if isinstance(example_inputs, Mapping):
            bad = [k for k in example_inputs if not isinstance(k, str)]
            if bad:
                raise InputError(f"keyword example inputs need string keys, got {bad!r}")
            return cls((), dict(example_inputs))
        raise InputError(
            f"example_inputs must be a tensor, a tuple of positional tensors or a dict of keyword "
            f"tensors; got {type(example_inputs).__name__}")

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor among the arguments (nested containers included)."""
        if not self.kwargs and all(type(a) is torch.Tensor for a in self.args):
            return list(self.args)
        leaves, _ = torch.utils._pytree.tree_flatten((self.args, dict(self.kwargs)))
        return [t for t in leaves if isinstance(t, torch.Tensor)]

    def call(self, model: torch.nn.Module) -> Any:
        """Run `model` on these inputs."""
        return model(*self.args, **dict(self.kwargs))

    def cloned(self) -> ExampleInputs:
        """The same arguments with every tensor copied (for runs that may write into their inputs)."""
        args, kwargs = torch.utils._pytree.tree_map(
            lambda t: t.clone() if isinstance(t, torch.Tensor) else t, (self.args, dict(self.kwargs)))
        return ExampleInputs(tuple(args), kwargs)

    def randomized(self, seed: int) -> ExampleInputs:
        """Inputs of the same shapes and dtypes with fresh values (ints stay in the example's range,
        booleans are kept as given: they are usually masks)."""
        gen = torch.Generator().manual_seed(seed)

        def fresh(t: Any) -> Any:
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                return t
            if t.dtype.is_floating_point:
                std = float(t.float().std()) if t.numel() > 1 else 1.0
                mean = float(t.float().mean()) if t.numel() > 0 else 0.0
                std = std if std > 0 and std == std else 1.0
                noise = torch.randn(t.shape, generator=gen, dtype=torch.float32)
                return (noise * std + mean).to(dtype=t.dtype, device=t.device)
            if t.dtype == torch.bool or t.numel() == 0:
                return t.clone()
            lo, hi = int(t.min()), int(t.max())
            return torch.randint(lo, hi + 1, t.shape, generator=gen, dtype=torch.int64).to(t.dtype).to(t.device)

        args, kwargs = torch.utils._pytree.tree_map(fresh, (self.args, dict(self.kwargs)))
        return ExampleInputs(tuple(args), kwargs)

    def describe(self) -> str:
        """Short text of the argument shapes, for messages."""
        def one(t: Any) -> str:
            if isinstance(t, torch.Tensor):
                return f"{tuple(t.shape)}:{str(t.dtype).replace('torch.', '')}"
            return type(t).__name__
        parts = [one(a) for a in self.args] + [f"{k}={one(v)}" for k, v in self.kwargs.items()]
        return "(" + ", ".join(parts) + ")"
