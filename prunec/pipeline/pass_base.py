"""Pass: a frozen dataclass of options with a declared contract (requires -> provides)."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from prunec.errors import PassError, PostconditionError, PruneError
from prunec.pipeline.state import Artifact, PruneState


@dataclass(frozen=True)
class PassResult:
    """A pass's new state and whether it changed anything."""

    state: PruneState
    changed: bool = True


class Pass(abc.ABC):
    """Base of every pass. Subclasses are frozen dataclasses whose fields are their options.

    Declare `requires` and `provides` (sets of Artifact); implement `run`. Calling the pass checks
    the result type and that every promised artifact is present, and names the pass on failure.
    """

    name: ClassVar[str] = ""
    requires: ClassVar[frozenset[Artifact]] = frozenset()
    provides: ClassVar[frozenset[Artifact]] = frozenset()

    @abc.abstractmethod
    def run(self, state: PruneState) -> PassResult:
        """Compute and return the new state."""

    @property
    def key(self) -> str:
        """The registered name, or the class name for unregistered passes."""
        return self.name or type(self).__name__

    def __call__(self, state: PruneState, history: Sequence[str] = ()) -> PassResult:
        try:
            result = self.run(state)
        except PruneError:
            raise
        except Exception as exc:
            raise PassError(f"pass {self.key!r} failed after {list(history)}: "
                            f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(result, PassResult):
            raise PostconditionError(
                f"pass {self.key!r} returned {type(result).__name__}; a pass must return "
                "PassResult(state, changed). Pass developer: wrap the new state in PassResult.")
        missing = self.provides - result.state.available()
        if missing:
            names = ", ".join(sorted(m.value for m in missing))
            raise PostconditionError(
                f"pass {self.key!r} promised {names} but its result has none. Pass developer: set "
                f"those PruneState fields, or drop them from `provides`.")
        return PassResult(result.state.replace(history=(*result.state.history, self.key)), result.changed)
