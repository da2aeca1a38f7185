"""Pass: a frozen dataclass of options with a declared contract (requires -> provides).

Calling a pass enforces the contract it declares: the result must be a PassResult, every artifact
in `provides` must be present afterwards, and no artifact outside `provides` and `modifies` may
be replaced. A
failure inside `run` that is not a prunec error is wrapped in PassError naming the pass and the
passes that ran before it.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from prunec.errors import PassError, PostconditionError, PruneError
from prunec.pipeline.state import ARTIFACT_FIELDS, Artifact, PruneState

MSG_NOT_A_RESULT = ("a pass must return PassResult(state, changed). Pass developer: wrap the new state, "
                    "e.g. `return PassResult(state.replace(masks=masks))`.")
MSG_UNDECLARED = ("Pass developer: add them to `provides` (or `modifies`), or leave those PruneState fields "
                  "as they were (keep the same objects).")


@dataclass(frozen=True)
class PassResult:
    """A pass's new state and whether it changed anything."""

    state: PruneState
    changed: bool = True


class Pass(abc.ABC):
    """Base of every pass. Subclasses are frozen dataclasses whose fields are their options.

    Declare `requires` and `provides` (frozensets of Artifact; `modifies` for artifacts it may
    replace without being their provider) and implement `run`. Register it
    with `@register_pass("kebab-name")` to use it in textual pipelines.
    """

    name: ClassVar[str] = ""
    requires: ClassVar[frozenset[Artifact]] = frozenset()
    provides: ClassVar[frozenset[Artifact]] = frozenset()
    modifies: ClassVar[frozenset[Artifact]] = frozenset()
    """Artifacts the pass may replace without providing them anew (e.g. verify's fallback output)."""

    @abc.abstractmethod
    def run(self, state: PruneState) -> PassResult:
        """Compute and return the new state."""

    @property
    def key(self) -> str:
        """The registered name, or the class name for unregistered passes."""
        return self.name or type(self).__name__

    def __call__(self, state: PruneState, history: Sequence[str] = ()) -> PassResult:
        """Run the pass and check its result against `provides`; `history` names earlier passes."""
        try:
            result = self.run(state)
        except PruneError:
            raise
        except Exception as exc:
            raise PassError(f"pass {self.key!r} failed after {list(history)}: "
                            f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(result, PassResult):
            got = type(result).__name__
            raise PostconditionError(f"pass {self.key!r} returned {got}; {MSG_NOT_A_RESULT}")
        new = result.state
        missing = self.provides - new.available()
        if missing:
            names = ", ".join(sorted(m.value for m in missing))
            raise PostconditionError(
                f"pass {self.key!r} promised {names} but its result has none. Pass developer: set "
                f"those PruneState fields, or drop them from `provides`.")
        allowed = self.provides | self.modifies
        replaced = sorted(a.value for a, f in ARTIFACT_FIELDS.items()
                          if a not in allowed and getattr(new, f) is not getattr(state, f))
        if replaced:
            raise PostconditionError(
                f"pass {self.key!r} replaced {', '.join(replaced)} without declaring it in `provides` "
                f"or `modifies` (it declares {sorted(a.value for a in allowed)}). {MSG_UNDECLARED}")
        return PassResult(new.replace(history=(*new.history, self.key)), result.changed)
