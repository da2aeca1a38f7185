"""PassManager: check the requires/provides chain before running anything, then run in order."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from prunec.errors import PassError, PassOrderError
from prunec.pipeline.pass_base import Pass
from prunec.pipeline.registry import providers_of
from prunec.pipeline.state import Artifact, PruneState


class PassManager:
    """Runs passes in order. `check(available)` validates the chain up front; `run` calls it first.

    Example::

        manager = PassManager(parse_pipeline("l2,select-uniform{ratio=0.5},rewrite-module,verify"))
        final = manager.run(state)
    """

    def __init__(self, passes: Sequence[Pass], *, on_pass: Callable[[str, int, int], None] | None = None
                 ) -> None:
        self.passes = list(passes)
        for i, p in enumerate(self.passes):
            if not isinstance(p, Pass):
                raise PassError(
                    f"pipeline item {i} is {p!r} ({type(p).__name__}), not a Pass; give Pass instances "
                    "such as SelectUniformPass(ratio=0.5), or names via parse_pipeline(...)")
        self.on_pass = on_pass

    def check(self, available: frozenset[Artifact]) -> None:
        """Raise PassOrderError if some pass requires what no earlier pass (or the state) provides.

        The message names the failing pass, the passes before it, and passes that would provide
        the missing artifact.
        """
        have = set(available)
        for i, p in enumerate(self.passes):
            missing = p.requires - have
            if missing:
                art = sorted(missing, key=lambda a: a.value)[0]
                providers = providers_of(art)
                hint = (f"; add a pass such as {', '.join(repr(n) for n in providers[:3])} before it"
                        if providers else "")
                before = [q.key for q in self.passes[:i]]
                raise PassOrderError(f"pass {p.key!r} requires {art.value!r}, which no earlier pass "
                                     f"provides (passes before it: {before}){hint}")
            have |= p.provides

    def run(self, state: PruneState) -> PruneState:
        """Check the chain, then run every pass and return the final state."""
        self.check(state.available())
        for i, p in enumerate(self.passes):
            if self.on_pass is not None:
                self.on_pass(p.key, i, len(self.passes))
            state = p(state, history=state.history).state
        return state

    def __str__(self) -> str:
        from prunec.pipeline.parse import format_pipeline

        return format_pipeline(self.passes)
