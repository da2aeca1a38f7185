"""Memoized recording of torch.nn leaf modules (used by torch_record.py).

A model calls the same torch.nn leaf module kinds (Linear, Conv2d, BatchNorm2d, ReLU, ...) many times
with the same configuration and input sizes, and every such call dispatches the same ATen ops with the
same non-tensor arguments. The recorder keeps the ops of the first call of each kind as a `Template`;
a later call with the same `key` is written down from the template without running the module: its
output tensors are allocated with the template's sizes and strides and their values are never
computed ("skipped"). The recorder then tracks which values are skipped and starts over with full
arithmetic as soon as a value could matter (see `_Recorder` in torch_record.py).

The key holds everything a torch.nn leaf's forward can branch on: its class, its own attributes
(training flag, sizes, strides, eps, ...), the sizes/dtypes of its parameters and buffers, and the
sizes/strides/dtypes/devices of its tensor arguments with the values of the others. Anything that
does not fit (a tensor held as a plain attribute, an argument of another type, a template that reads
values: integer outputs, data-dependent sizes, random ops) makes the call unkeyable; it is then
recorded op by op as usual.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import torch

# Module bookkeeping (hook dicts, parameter stores; the recorder's forward shadow): not configuration
_INTERNAL = (frozenset(torch.nn.Module().__dict__) - {"training"}) | {"forward"}
_PLAIN = (type(None), bool, int, float, complex, str, torch.dtype, torch.device, torch.layout,
          torch.memory_format, enum.Enum)
VALUE_TAGS = frozenset(t for t in (getattr(torch.Tag, "dynamic_output_shape", None),
                                   getattr(torch.Tag, "data_dependent_output", None)) if t is not None)
"""Op tags saying the result's size (or the result itself) is read off the input values."""


class Unkeyable(Exception):
    """The call cannot be keyed: record it op by op."""


_HEAVY = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.ConvTranspose1d,
          torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)
META_CAPTURE_MACS = 1_000_000
"""A first call of a Linear or Conv with more multiply-adds than this is recorded on meta twins:
running it on the meta device (about 16 µs in the kernel, some 40 µs more for the twins) costs
less than the arithmetic. Multiply-adds understate some kernels badly: on one CPU thread a 1x1 conv
of 32 -> 16 channels at 112x112 (6.4 M) takes 160 µs, a depthwise 3x3 conv of 96 channels at
112x112 (10.8 M) 7 ms. At 1 M rather than 20 M, analysing MobileNetV2 fell from 35 to 28 ms and
EfficientNet-B0 from 51 to 39 ms; MLPs and ResNet-50 were unchanged."""


_POOLS = (torch.nn.MaxPool1d, torch.nn.MaxPool2d, torch.nn.MaxPool3d)
META_CAPTURE_POOL_ELEMENTS = 50_000
"""Max pooling is slow on CPU (milliseconds for a 64x112x112 input) and its meta run takes tens of
microseconds: a first call on at least this many input elements is recorded on a meta twin."""


def worth_meta(module: torch.nn.Module, leaves: list[Any]) -> bool:
    """Whether to record this first call on meta twins instead of computing it (Linear, Conv and
    max pooling, whose one output is a new tensor)."""
    if len(leaves) != 1 or type(leaves[0]) is not torch.Tensor:
        return False
    x = leaves[0]
    if x.device.type == "meta" or not x.dtype.is_floating_point:
        return False
    if type(module) in _POOLS:
        return not module.return_indices and x.numel() >= META_CAPTURE_POOL_ELEMENTS
    if type(module) not in _HEAVY:
        return False
    w = module.weight
    if w.device.type == "meta":
        return False
    fan_in = getattr(module, "in_features", None) or getattr(module, "in_channels", 1)
    stride = 1
    if not getattr(module, "transposed", False):
        for s in getattr(module, "stride", (1,)):
            stride *= s
    return x.numel() * w.numel() / max(fan_in * stride, 1) >= META_CAPTURE_MACS


def memoizable(module: torch.nn.Module) -> bool:
    """A leaf module of torch.nn itself (its forward is torch's own code) that has no forward of its own
    set on the instance."""
    return (type(module).__module__.startswith("torch.nn.modules.") and not module._modules
            and "forward" not in module.__dict__)


def _frozen(v: Any) -> Any:
    if isinstance(v, _PLAIN):
        return v
    if isinstance(v, (tuple, list)):
        return (type(v).__name__, tuple(_frozen(x) for x in v))
    raise Unkeyable(type(v).__name__)


def _tensor_key(t: torch.Tensor) -> tuple[Any, ...]:
    if type(t) not in (torch.Tensor, torch.nn.Parameter):
        raise Unkeyable(type(t).__name__)
    return (t.shape, t.stride(), t.dtype, t.device, t.layout)


_SCALARS = frozenset({type(None), bool, int, float, str})


def key(module: torch.nn.Module, leaves: list[Any]) -> tuple[Any, ...]:
    """The memo key of calling `module` with these flattened arguments (raises Unkeyable)."""
    attrs = [(k, v if type(v) in _SCALARS else _frozen(v)) for k, v in module.__dict__.items() if k not in _INTERNAL]
    state = [(k, None if t is None else _tensor_key(t)) for k, t in module._parameters.items()]
    if module._buffers:
        state += [(k, None if t is None else _tensor_key(t)) for k, t in module._buffers.items()]
    if len(leaves) == 1 and type(leaves[0]) is torch.Tensor:
        args: list[Any] = [(_tensor_key(leaves[0]), 0)]
    else:
        seen: dict[int, int] = {}
        args = []
        for i, leaf in enumerate(leaves):
            if isinstance(leaf, torch.Tensor):
                # which earlier argument is the same tensor object (aliasing can change in-place effects)
                args.append((_tensor_key(leaf), seen.setdefault(id(leaf), i)))
            else:
                args.append(_frozen(leaf))
    return (type(module), tuple(attrs), tuple(state), tuple(args))


@dataclass(frozen=True, slots=True)
class Slot:
    """Where a template's tensor comes from: 'in' (the i-th argument leaf), 'attr' (the module's
    parameter or buffer of that name) or 'new' (the i-th value the template's ops make)."""

    kind: str
    index: int | str


@dataclass(frozen=True, slots=True)
class TemplateCall:
    """One op of a template: the Call fields with Slots in place of Refs."""

    target: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    base_name: str
    outs: tuple[int | None, ...]
    """'new' index of each tensor output."""
    sequence: bool
    other: Any
    written_inputs: tuple[int, ...]
    """Argument leaves the op writes into (an in-place op on an input)."""
    flat: bool = False
    """No keyword arguments and no list arguments: each argument is a Slot or a plain value."""


@dataclass(frozen=True, slots=True)
class OutLeaf:
    """One leaf of the module's output: a tensor (its slot, whether it is an argument object itself,
    and how to allocate it) or a plain value."""

    slot: Slot | None
    same_as_input: int | None
    size: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    dtype: torch.dtype | None = None
    device: torch.device | None = None
    value: Any = None


@dataclass(frozen=True, slots=True)
class Template:
    """The ops one keyed call dispatched, and how its outputs and arguments relate to them."""

    calls: tuple[TemplateCall, ...]
    new_meta: tuple[tuple[tuple[int, ...], torch.dtype], ...]
    """(size, dtype) of every 'new' value, in creation order."""
    out_leaves: tuple[OutLeaf, ...]
    out_spec: Any
    rebinds: tuple[tuple[int, Slot], ...]
    """Argument leaves that an in-place op turned into a new value."""
    single: bool = False
    """One op on plain arguments that returns the module's one output, a new tensor (Linear, Conv,
    norms, activations): written down without the general bookkeeping."""
    plan: tuple[tuple[int, Any], ...] = ()
    """For a single template: each argument of its op as (IN, argument index), (STATE, parameter or
    buffer name) or (PLAIN, the value)."""


PLAIN, IN, STATE = 0, 1, 2


def build_template(calls: list[Any], meta: dict[int, tuple[tuple[int, ...], torch.dtype]],
                   in_refs: list[int | None], attr_refs: dict[int, str], after_refs: list[int | None],
                   leaves: list[Any], out: Any, ref_of: Any, base_name: Any,
                   device: torch.device | None = None) -> Template:
    """The template of one recorded call (raises Unkeyable when the call is not self-contained or
    its values could matter)."""
    # torch_record imports this module
    from prunec.frontends.torch_record import Ref, flatten, map_args, op_facts

    new: dict[int, int] = {}
    new_meta: list[tuple[tuple[int, ...], torch.dtype]] = []
    first_in: dict[int, int] = {}
    for i, r in enumerate(in_refs):
        if r is not None:
            first_in.setdefault(r, i)

    def slot(ref: int) -> Slot:
        if ref in new:
            return Slot("new", new[ref])
        if ref in first_in:
            return Slot("in", first_in[ref])
        if ref in attr_refs:
            return Slot("attr", attr_refs[ref])
        raise Unkeyable("the module reads a tensor that is neither an argument nor its own state")

    def spec(a: Any) -> Any:
        return map_args(a, Ref, lambda r: slot(r.id))

    out_calls = []
    for c in calls:
        facts = op_facts(c.target)
        if facts.reads_values:
            raise Unkeyable(f"{c.target} depends on values")
        args, kwargs = spec(c.args), {k: spec(v) for k, v in c.kwargs.items()}
        written = ()
        if facts.mutable:
            given = dict(zip(facts.arg_names, args)) | kwargs
            targets = [given.get(name) for name in facts.written]
            written = tuple(s.index for s in targets if isinstance(s, Slot) and s.kind == "in")  # type: ignore[misc]
        outs = []
        for r in c.outs:
            if r is None:
                outs.append(None)
                continue
            size, dtype = meta[r]
            if not (dtype.is_floating_point or dtype.is_complex):
                raise Unkeyable("the module makes integer or boolean tensors (indices, masks)")
            new[r] = len(new_meta)
            new_meta.append((size, dtype))
            outs.append(new[r])
        flat = not kwargs and not any(isinstance(a, (list, tuple)) for a in args)
        out_calls.append(TemplateCall(c.target, args, kwargs, base_name(c.target), tuple(outs), c.sequence,
                                      c.other, written, flat))  # type: ignore[arg-type]
    out_leaves_, out_spec = flatten(out)
    ids = {id(x): i for i, x in enumerate(leaves) if isinstance(x, torch.Tensor)}
    out_leaves = []
    for leaf in out_leaves_:
        if isinstance(leaf, torch.Tensor):
            ref = ref_of.get(leaf)
            if ref is None:
                raise Unkeyable("an output was made outside any recorded op")
            out_leaves.append(OutLeaf(slot(ref), ids.get(id(leaf)), tuple(leaf.shape), leaf.stride(), leaf.dtype,
                                      device or leaf.device))
        elif isinstance(leaf, _PLAIN) and not isinstance(leaf, enum.Enum):
            out_leaves.append(OutLeaf(None, None, value=leaf))
        else:
            raise Unkeyable(f"the module returns a {type(leaf).__name__}")
    rebinds = tuple((i, slot(after)) for i, (before, after) in enumerate(zip(in_refs, after_refs))
                    if after is not None and after != before)
    single = (len(out_calls) == 1 and out_calls[0].flat and not out_calls[0].sequence
              and not out_calls[0].written_inputs and out_calls[0].outs == (0,) and not rebinds
              and out_spec.is_leaf() and len(out_leaves) == 1 and out_leaves[0].same_as_input is None
              and out_leaves[0].slot is not None and out_leaves[0].slot.kind == "new"
              and out_leaves[0].slot.index == 0)
    plan: tuple[tuple[int, Any], ...] = ()
    if single:
        plan = tuple((PLAIN, a) if type(a) is not Slot else (IN if a.kind == "in" else STATE, a.index)
                     for a in out_calls[0].args)
    return Template(tuple(out_calls), tuple(new_meta), tuple(out_leaves), out_spec, rebinds, single, plan)
