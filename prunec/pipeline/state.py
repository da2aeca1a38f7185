"""PruneState: the typed, frozen record that passes read and replace."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np
from torch import nn

from prunec.analysis.result import Analysis
from prunec.inputs import ExampleInputs
from prunec.targets import Target
from prunec.verify import VerificationReport


class Artifact(str, Enum):
    """What a pass may require or provide."""

    MODEL = "model"
    ANALYSIS = "analysis"
    SCORES = "scores"
    MASKS = "masks"
    PRUNED = "pruned"
    VERIFIED = "verified"
    CALIBRATION = "calibration"


ARTIFACT_FIELDS: dict[Artifact, str] = {
    Artifact.MODEL: "model",
    Artifact.ANALYSIS: "analysis",
    Artifact.SCORES: "scores",
    Artifact.MASKS: "masks",
    Artifact.PRUNED: "pruned",
    Artifact.VERIFIED: "verification",
    Artifact.CALIBRATION: "calibration",
}
"""The PruneState field that holds each artifact."""


@dataclass(frozen=True)
class PruneState:
    """Everything a pipeline knows at one point. Fields are references: `replace` costs nothing."""

    model: nn.Module
    """The working model (a copy of the user's unless inplace=True)."""
    inputs: ExampleInputs
    analysis: Analysis | None = None
    scores: Mapping[int, np.ndarray] | None = None
    """Group id -> importance of each channel (higher = keep)."""
    masks: Mapping[int, tuple[int, ...]] | None = None
    """Group id -> channels to remove (original channel numbers of the group)."""
    target: Target | None = None
    round_to: int | None = None
    ignore: tuple[str, ...] = ()
    strict: bool = False
    calibration: tuple[ExampleInputs, ...] = ()
    """Batches for data-driven criteria (inputs only)."""
    loss_fn: Any = None
    """Callable(model_output, batch_index) -> scalar loss, for gradient-based criteria."""
    reference_model: nn.Module | None = None
    """Untouched copy of the original, for verification."""
    pruned: nn.Module | None = None
    output_kind: str | None = None
    """'module' (same classes) or 'graph_module' (the traced program)."""
    verification: VerificationReport | None = None
    tolerance: float | None = None
    """Verification tolerance; None: by output dtype (verify.default_tolerance)."""
    notes: tuple[str, ...] = ()
    history: tuple[str, ...] = ()
    extras: Mapping[str, Any] = field(default_factory=dict)
    """Typed fields cover the built-ins; third-party passes may keep their own results here."""

    def replace(self, **changes: Any) -> PruneState:
        """A copy with some fields replaced."""
        return dataclasses.replace(self, **changes)

    def note(self, text: str) -> PruneState:
        """A copy with one more report note."""
        return self.replace(notes=(*self.notes, text))

    def available(self) -> frozenset[Artifact]:
        """Artifacts this state holds."""
        have = {Artifact.MODEL}
        if self.analysis is not None:
            have.add(Artifact.ANALYSIS)
        if self.scores is not None:
            have.add(Artifact.SCORES)
        if self.masks is not None:
            have.add(Artifact.MASKS)
        if self.pruned is not None:
            have.add(Artifact.PRUNED)
        if self.verification is not None:
            have.add(Artifact.VERIFIED)
        if self.calibration:
            have.add(Artifact.CALIBRATION)
        return frozenset(have)
