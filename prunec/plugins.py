"""Plugin discovery: packages add op rules, passes and criteria through one entry-point group.

A plugin package declares, in its pyproject.toml::

    [project.entry-points."prunec.plugins"]
    mylib = "mylib_prunec"          # a module whose import registers rules/passes/criteria
    # or  mylib = "mylib_prunec:register"   (a function, called once with no arguments)

`load_plugins()` imports every installed plugin once (`prunec.analyze` and `prunec.prune` call
it). What a plugin registers is attributed to it: `extensions()` and `prunec plugins` list every
rule, pass and criterion with where it came from. A name clash is a RuleConflictError naming both
sources; a plugin that fails to import is a PluginError naming the plugin and its distribution.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from prunec.errors import PluginError, RuleConflictError
from prunec.sources import PLUGIN_PATHS, claim_plugin_path, describe_source, plugin_of

GROUP = "prunec.plugins"
KINDS = ("rule", "pass", "criterion")


@dataclass(frozen=True)
class LoadedPlugin:
    """One entry point that was loaded."""

    name: str
    value: str
    distribution: str | None
    version: str | None = None

    @property
    def label(self) -> str:
        """"plugin 'name' (distribution version)", as sources and messages show it."""
        return _label(self.name, self.distribution, self.version)


@dataclass(frozen=True)
class Extension:
    """One registered rule, pass or criterion and where it came from."""

    kind: str
    """'rule', 'pass' or 'criterion'."""
    name: str
    source: str
    """'file:line' of the definition."""
    plugin: str | None
    """The label of the plugin that registered it, if any."""

    @property
    def origin(self) -> str:
        """Readable source: built-in path, plugin label and path, or the user's file:line."""
        return describe_source(self.source)


_loaded: list[LoadedPlugin] = []
_done = False


def _label(name: str, dist: str | None, version: str | None) -> str:
    where = " ".join(p for p in (dist, version) if p)
    return f"plugin '{name}'" + (f" ({where})" if where else "")


def _claim(ep: EntryPoint, label: str) -> None:
    """Attribute the plugin's files to it before importing them (so clashes can name it)."""
    try:
        spec = importlib.util.find_spec(ep.module.split(".")[0])
    except (ImportError, ValueError):
        return
    if spec is None:
        return
    if spec.submodule_search_locations:
        for directory in spec.submodule_search_locations:
            claim_plugin_path(directory, label)
    elif spec.origin:
        claim_plugin_path(spec.origin, label)  # a single-module plugin: just its file


def _load_one(ep: EntryPoint) -> LoadedPlugin:
    dist = getattr(ep, "dist", None)
    plugin = LoadedPlugin(ep.name, ep.value, getattr(dist, "name", None), getattr(dist, "version", None))
    _claim(ep, plugin.label)
    try:
        obj = ep.load()
        if inspect.isfunction(obj):
            obj()
    except RuleConflictError as exc:
        raise RuleConflictError(f"while loading {plugin.label}: {exc}") from exc
    except Exception as exc:
        what = plugin.distribution or ep.value
        raise PluginError(
            f"{plugin.label} (entry point {ep.name} = {ep.value}) failed to load: {type(exc).__name__}: "
            f"{exc}. Fix it, or uninstall {what!r} to run prunec without it.") from exc
    return plugin


def load_plugins(force: bool = False) -> list[LoadedPlugin]:
    """Import every installed plugin of the 'prunec.plugins' group once; return those loaded.

    `force=True` looks again (for plugins installed after the first call); plugins already
    loaded are not imported twice.

    Raises:
        RuleConflictError: a plugin registers a name that is taken (both sources are named).
        PluginError: a plugin fails to import.

    """
    global _done
    if _done and not force:
        return list(_loaded)
    for ep in sorted(entry_points(group=GROUP), key=lambda e: (e.name, e.value)):
        if any(p.name == ep.name and p.value == ep.value for p in _loaded):
            continue
        _loaded.append(_load_one(ep))
    _done = True
    return list(_loaded)


def _load_builtins() -> None:
    # importing these registers the built-in passes, criteria and op rules
    import prunec.passes
    import prunec.rules  # noqa: F401


def extensions(kinds: Sequence[str] = KINDS) -> list[Extension]:
    """Every registered op rule, pass and criterion (built-ins and plugins loaded), by kind and name."""
    from prunec.pipeline import PASSES
    from prunec.rules import RULES
    from prunec.scoring import CRITERIA

    _load_builtins()
    load_plugins()
    rows: list[Extension] = []
    if "rule" in kinds:
        rows += [Extension("rule", e.key, e.source, plugin_of(e.source)) for e in RULES]
    if "pass" in kinds:
        rows += [Extension("pass", n, e.source, plugin_of(e.source)) for n, e in sorted(PASSES.items())]
    if "criterion" in kinds:
        rows += [Extension("criterion", n, e.source, plugin_of(e.source))
                 for n, e in sorted(CRITERIA.items())]
    return rows


def format_extensions(rows: Sequence[Extension], plugins: Sequence[LoadedPlugin] = ()) -> str:
    """A table per kind: name and origin; then the plugins that were loaded."""
    lines: list[str] = []
    heads = {"rule": "op rules", "pass": "passes", "criterion": "criteria"}
    for kind in KINDS:
        chosen = [r for r in rows if r.kind == kind]
        if not chosen:
            continue
        width = max(len(r.name) for r in chosen)
        lines.append(f"{heads[kind]} ({len(chosen)}):")
        lines += [f"  {r.name:<{width}}  {r.origin}" for r in chosen]
    lines.append(f"plugins ({len(plugins)}):" if plugins else "plugins: none installed "
                 f"(entry-point group {GROUP!r})")
    lines += [f"  {p.label}: {p.name} = {p.value}" for p in plugins]
    return "\n".join(lines)


@contextlib.contextmanager
def isolated_registries() -> Iterator[None]:
    """Undo, on exit, every rule, pass, criterion and plugin registered inside the block.

    For tests of rules and plugins, and for scripts that register things temporarily.
    """
    global _done
    from prunec.pipeline import PASSES
    from prunec.rules import RULES
    from prunec.scoring import CRITERIA

    _load_builtins()
    rules, passes, criteria = RULES.snapshot(), dict(PASSES), dict(CRITERIA)
    loaded, done, dirs = list(_loaded), _done, dict(PLUGIN_PATHS)
    try:
        yield
    finally:
        RULES.restore(rules)
        PASSES.clear()
        PASSES.update(passes)
        CRITERIA.clear()
        CRITERIA.update(criteria)
        _loaded[:] = loaded
        _done = done
        PLUGIN_PATHS.clear()
        PLUGIN_PATHS.update(dirs)
