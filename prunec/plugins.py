"""Plugin discovery: packages expose rules, passes and criteria through one entry-point group.

A plugin package declares, in its pyproject.toml::

    [project.entry-points."prunec.plugins"]
    mylib = "mylib_prunec"          # a module whose import registers rules/passes/criteria

Importing it runs its @op_rule / @register_pass / @register_criterion decorators; clashes with
existing names are errors that name both sources.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points

GROUP = "prunec.plugins"


@dataclass(frozen=True)
class LoadedPlugin:
    """One entry point that was loaded."""

    name: str
    value: str
    distribution: str | None


_loaded: list[LoadedPlugin] = []
_done = False


def load_plugins(force: bool = False) -> list[LoadedPlugin]:
    """Import every installed plugin once; return what was loaded."""
    global _done
    if _done and not force:
        return list(_loaded)
    _done = True
    for ep in entry_points(group=GROUP):
        if any(p.name == ep.name and p.value == ep.value for p in _loaded):
            continue
        ep.load()
        dist = getattr(getattr(ep, "dist", None), "name", None)
        _loaded.append(LoadedPlugin(ep.name, ep.value, dist))
    return list(_loaded)
