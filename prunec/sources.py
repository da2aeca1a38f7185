"""Where registered rules, passes and criteria come from, in words a person can act on.

Registries record a definition's `file:line`. `describe_source` turns it into
'built-in prunec/rules/torch_ops.py:33', "plugin 'demo' (prunec-demo-plugin 0.1.0)
.../prunec_demo_plugin/__init__.py:12", or the plain path for the user's own code. Plugins are
known by the directory of their package, which `plugins.load_plugins` claims before importing it.
"""

from __future__ import annotations

import inspect
import os

PLUGIN_PATHS: dict[str, str] = {}
"""Path prefix -> plugin label: a package directory (with a trailing separator) or a module file."""


def source_of(obj: object) -> str:
    """'file:line' of a class or function definition (its module name when unknown)."""
    code = getattr(obj, "__code__", None)
    if code is not None:
        return f"{code.co_filename}:{code.co_firstlineno}"
    try:
        return f"{inspect.getsourcefile(obj)}:{inspect.getsourcelines(obj)[1]}"  # type: ignore[arg-type]
    except (TypeError, OSError):
        return str(getattr(obj, "__module__", "?"))


def claim_plugin_path(path: str, label: str) -> None:
    """Attribute every definition in `path` (a package directory or a module file) to `label`."""
    full = os.path.abspath(path)
    PLUGIN_PATHS[os.path.join(full, "") if os.path.isdir(full) else full] = label


def _builtin_roots() -> list[tuple[str, str]]:
    import prunec

    here = os.path.dirname(os.path.abspath(prunec.__file__))
    roots = [(os.path.join(here, ""), "prunec/")]
    try:
        import prunec.passes as passes

        roots.insert(0, (os.path.join(os.path.dirname(os.path.abspath(passes.__file__)), ""),
                         "prunec/passes/"))
    except ImportError:  # a broken install; plain paths are still correct
        pass
    return roots


def plugin_of(source: str) -> str | None:
    """The plugin label owning `source` ('file:line'), or None."""
    path = os.path.abspath(source.rsplit(":", 1)[0])
    for prefix, label in PLUGIN_PATHS.items():
        if path.startswith(prefix):
            return label
    return None


def describe_source(source: str) -> str:
    """A readable origin: built-in (path inside prunec), a plugin's label and path, or the path."""
    path, sep, line = source.rpartition(":")
    if not sep or not line.isdigit():
        return source
    label = plugin_of(source)
    if label is not None:
        return f"{label} {source}"
    full = os.path.abspath(path)
    for root, shown in _builtin_roots():
        if full.startswith(root):
            return f"built-in {shown}{full[len(root):].replace(os.sep, '/')}:{line}"
    return source
