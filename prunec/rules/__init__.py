"""Op rules: the public API to describe how channels flow through an op, and the registry."""

from prunec.ir.slots import ArrayMap, Block, ChannelMap, Coupling, Digit, Explicit, Identity, Offset, Slot, Strided, Tile
from prunec.rules.api import (
    Declined,
    OpView,
    RuleResult,
    TensorView,
    alternatives,
    couple,
    decline,
    free,
    pin,
    reduces,
)
from prunec.rules.families import broadcasting, creation, elementwise, metadata_only, spatial
from prunec.rules.registry import RULES, RuleRegistry, op_rule

from prunec.rules import torch_ops as _torch_ops  # noqa: E402,F401  (registers the ATen table)
from prunec.rules import onnx_ops as _onnx_ops  # noqa: E402,F401  (registers the ONNX table)
from prunec.rules import torch_attention as _torch_attention  # noqa: E402,F401  (attention rules, axis roles)

__all__ = [
    "RULES", "ArrayMap", "Block", "ChannelMap", "Coupling", "Declined", "Digit", "Explicit", "Identity",
    "Offset", "OpView", "RuleRegistry", "RuleResult", "Slot", "Strided", "TensorView", "Tile", "alternatives",
    "broadcasting", "couple", "creation", "decline", "elementwise", "free", "metadata_only", "op_rule", "pin",
    "reduces", "spatial",
]
