"""Progress reporting for long runs: a callback per stage, or a tqdm bar.

`prunec.prune(..., progress=True)` shows a bar; `progress=fn` calls `fn(ProgressEvent)` at the start
of every stage (trace, couple, group, then each pass) and once more with stage 'done'. A callback
may raise (KeyboardInterrupt included) to cancel: prune leaves the user's model as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ProgressEvent:
    """Stage `index` of `total` is starting (stage 'done' when index == total)."""

    stage: str
    index: int
    total: int


ProgressCallback = Callable[[ProgressEvent], None]
ProgressLike = bool | ProgressCallback | None


class Progress:
    """Emits ProgressEvents to a callback and/or a tqdm bar; `close()` ends the bar."""

    def __init__(self, progress: ProgressLike, total: int, desc: str = "prunec") -> None:
        if progress is not None and not isinstance(progress, bool) and not callable(progress):
            from prunec.errors import InputError

            raise InputError("progress= takes True, False, None or a callable, got "
                             f"{type(progress).__name__}")
        self.total = total
        self.index = 0
        self._callback = progress if callable(progress) and not isinstance(progress, bool) else None
        self._bar: Any = None
        if progress is True:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit="stage", leave=False)

    def stage(self, name: str) -> None:
        """A new stage starts."""
        if self._bar is not None:
            self._bar.set_description(f"prunec: {name}")
            self._bar.n = self.index
            self._bar.refresh()
        if self._callback is not None:
            self._callback(ProgressEvent(name, self.index, self.total))
        self.index += 1

    def done(self) -> None:
        """Every stage finished."""
        self.index = self.total
        if self._callback is not None:
            self._callback(ProgressEvent("done", self.total, self.total))
        self.close()

    def close(self) -> None:
        """Close the bar (also on failure)."""
        if self._bar is not None:
            self._bar.n = self.index
            self._bar.close()
            self._bar = None


def silent() -> Progress:
    """A Progress that reports nothing."""
    return Progress(None, 0)
