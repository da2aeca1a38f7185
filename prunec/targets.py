"""Pruning targets: what fraction to keep, of what."""

from __future__ import annotations

from dataclasses import dataclass

from prunec.errors import TargetError

KINDS = ("ratio", "macs", "params", "latency")


@dataclass(frozen=True)
class Target:
    """`kind='ratio'`: remove that fraction of every group's channels. `macs`/`params`/`latency`:
    keep that fraction of the model's MACs / parameters / measured latency."""

    kind: str
    value: float

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise TargetError(f"unknown target kind {self.kind!r}; use one of {', '.join(KINDS)}")
        v = self.value
        if not isinstance(v, (int, float)) or v != v:
            raise TargetError(f"target {self.kind} must be a number, got {v!r}")
        if self.kind == "ratio" and not 0.0 <= v < 1.0:
            raise TargetError(f"ratio={v} is the fraction of channels to REMOVE and must be in [0, 1); "
                              "ratio=0.5 removes half of every group's channels")
        if self.kind != "ratio" and not 0.0 < v <= 1.0:
            raise TargetError(f"{self.kind}={v} is the fraction of {self.kind} to KEEP and must be in (0, 1]; "
                              f"{self.kind}=0.5 keeps half")

    @classmethod
    def parse(cls, text: str | Target) -> Target:
        """'macs=0.5', 'params=0.3', 'latency=0.5' or 'ratio=0.4'."""
        if isinstance(text, Target):
            return text
        kind, eq, value = str(text).partition("=")
        if not eq:
            raise TargetError(f"target {text!r} must look like 'macs=0.5', 'params=0.5', 'latency=0.5' "
                              "or 'ratio=0.5'")
        try:
            number = float(value)
        except ValueError:
            raise TargetError(f"target {text!r}: {value!r} is not a number") from None
        return cls(kind.strip().lower(), number)

    def __str__(self) -> str:
        return f"{self.kind}={self.value:g}"
