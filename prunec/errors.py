"""Every exception prunec raises on purpose, in one hierarchy.

Each message says what happened, where (node, op, module, parameter) and what to do about it.
"""

from __future__ import annotations


class PruneError(Exception):
    """Base class of every error prunec raises on purpose."""


class TraceError(PruneError):
    """The model could not be traced into prunec's IR."""


class InputError(PruneError):
    """The example inputs (or other user arguments) do not fit the model."""


class UnsupportedOpError(PruneError):
    """An op has no rule (or its rule declined) and `strict=True` was asked for."""


class IRError(PruneError):
    """The IR broke one of its structural invariants (a bug in a frontend or pass)."""


class RuleConflictError(PruneError):
    """Two op rules, passes or criteria were registered under the same key."""


class PluginError(PruneError):
    """A plugin, op rule, pass or criterion could not be loaded or registered (not a clash)."""


class PassError(PruneError):
    """A pass failed; the message names the pass and the passes that ran before it."""


class PassOrderError(PassError):
    """A pipeline's passes require artifacts that no earlier pass provides."""


class PostconditionError(PassError):
    """A pass returned a state that breaks what it promised to provide."""


class PipelineSyntaxError(PassError):
    """A textual pipeline could not be parsed, or names unknown passes."""


class TargetError(PruneError):
    """A pruning target is invalid, contradictory or cannot be reached."""


class VerificationError(PruneError):
    """The pruned model does not compute what the contract says it must."""


class OnnxModelError(PruneError):
    """An ONNX file is missing, corrupt, or uses something prunec cannot read."""


class PlanError(PruneError):
    """A saved pruning plan does not match the model it is applied to."""
