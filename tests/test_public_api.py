"""The public surface: snapshots of prunec.__all__ and prunec.passes.__all__, and import hygiene.

The built-in passes, the example plugin and the tutorial use only public modules and names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import prunec.passes

import prunec
from prunec.public import PUBLIC_MODULES, is_public
from tests.test_docs import code_blocks

ROOT = Path(__file__).resolve().parents[1]

PRUNEC_ALL = [
    "Analysis", "Artifact", "Criterion", "Group", "IRError", "InputError", "OnnxModelError", "Pass",
    "PassError", "PassManager", "PassOrderError", "PassResult", "Pinned", "PinnedParam",
    "PipelineSyntaxError", "PlanError", "PluginError", "PostconditionError", "PruneError", "PruneReport",
    "PruneResult", "PruneState",
    "RemovedGroup", "RuleConflictError", "Slice", "SliceData", "Target", "TargetError", "TraceError",
    "TrainOnceResult", "compile_zero_groups", "train_once",
    "load", "save",
    "UnsupportedOpError", "VerificationError", "__version__", "analyze", "count_params", "op_rule",
    "parse_pipeline", "prune", "register_criterion", "register_pass", "zeroed_copy",
]
PASSES_ALL = ["L1", "L2", "Magnitude", "RewriteGraphModulePass", "RewriteModulePass", "SelectUniformPass",
              "VerifyPass", "plan_uniform", "search_ratio",
              "CRIC", "DHSPG", "HESSO", "HSPG", "GroupSparseOptimizer", "TrainGroupSparse", "ZeroGroupsPass",
              "make_optimizer",
              "Activation", "BNScale", "Hessian", "LAMP", "Random", "ReconstructPass", "SelectGlobalPass",
              "Taylor"]


def test_prunec_all_snapshot() -> None:
    """prunec.__all__ changes only on purpose (update this snapshot with the change)."""
    assert sorted(prunec.__all__) == sorted(PRUNEC_ALL)
    assert all(hasattr(prunec, n) for n in prunec.__all__)


def test_passes_all_snapshot() -> None:
    """prunec.passes.__all__ changes only on purpose."""
    assert sorted(prunec.passes.__all__) == sorted(PASSES_ALL)
    assert all(hasattr(prunec.passes, n) for n in prunec.passes.__all__)


def test_public_modules_exist() -> None:
    """Every module named public can be imported."""
    import importlib

    for name in sorted(PUBLIC_MODULES):
        importlib.import_module(name)


def private_uses(source: str, package: str = "prunec.passes") -> list[str]:
    """List the private uses in `source`, a module inside `package`.

    Private uses are imports of non-public prunec modules, `_private` names imported from prunec,
    and `_private` attributes read off prunec modules.
    """
    tree = ast.parse(source)
    found: list[str] = []
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative import inside `package`
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{module}" if module else base
            if not (module == "prunec" or module.startswith("prunec.")):
                continue
            if not is_public(module):
                found.append(f"line {node.lineno}: from {module} import ... (not a public module)")
            for alias in node.names:
                if alias.name.startswith("_"):
                    found.append(f"line {node.lineno}: from {module} import {alias.name} (a private name)")
                bound.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("prunec") and not is_public(alias.name):
                    found.append(f"line {node.lineno}: import {alias.name} (not a public module)")
                if alias.name.startswith("prunec"):
                    bound.add((alias.asname or alias.name).split(".")[0])
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name) and node.value.id in bound):
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr} (a private name)")
    return found


def test_checker_finds_private_uses() -> None:
    """The checker flags internal modules, private names and private attributes."""
    source = ("from prunec.analysis.coupling import analyse_couplings\nfrom prunec.scoring import _rows\n"
              "import prunec.frontends.torch_export\nfrom prunec import scoring\nscoring._rows(1)\n"
              "from prunec.pipeline import Pass\nfrom .uniform import plan_uniform\n")
    assert private_uses(source, "prunec.passes.select") == [
        "line 1: from prunec.analysis.coupling import ... (not a public module)",
        "line 2: from prunec.scoring import _rows (a private name)",
        "line 3: import prunec.frontends.torch_export (not a public module)",
        "line 5: scoring._rows (a private name)",
    ]


def _package_of(path: Path) -> str:
    parts = path.relative_to(ROOT / "passes").with_suffix("").parts
    return ".".join(("prunec", "passes", *parts[:-1]))


def test_builtin_passes_use_only_the_public_surface() -> None:
    """passes/ (installed as prunec.passes) imports nothing private from prunec."""
    files = sorted((ROOT / "passes").rglob("*.py"))
    assert len(files) >= 10
    problems = {str(f.relative_to(ROOT)): private_uses(f.read_text(), _package_of(f)) for f in files}
    assert {f: p for f, p in problems.items() if p} == {}


def test_plugin_and_tutorial_use_only_the_public_surface() -> None:
    """The example plugin package and the tutorial's code are written against the public surface too."""
    plugin = ROOT / "tests" / "plugin_pkg" / "prunec_demo_plugin" / "__init__.py"
    assert private_uses(plugin.read_text(), "prunec_demo_plugin") == []
    tutorial = "\n".join(c for _, c in code_blocks(ROOT / "docs" / "WRITING_PASSES.md", "python"))
    assert private_uses(tutorial, "tutorial") == []
