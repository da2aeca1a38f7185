"""Plugins: a real package, pip-installed into a temporary directory, is discovered and used.

It is found through the "prunec.plugins" entry-point group; what it registers is listed with its
source; clashes and broken plugins are errors that name the plugin.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

import prunec
from prunec import cli
from prunec.plugins import extensions, isolated_registries, load_plugins
from prunec.sources import describe_source
from tests.helpers import assert_prunes_equivalently

PACKAGE = Path(__file__).resolve().parents[1] / "plugin_pkg"


@pytest.fixture(scope="module")
def demo_plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """pip-install tests/plugin_pkg into a temporary target, put it on sys.path and load plugins."""
    work = tmp_path_factory.mktemp("plugin")
    source, target = work / "src", work / "site"
    shutil.copytree(PACKAGE, source)  # pip builds in place: keep the repository clean
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(source)], check=True, timeout=120)
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    try:
        with isolated_registries():
            load_plugins(force=True)
            yield target
    finally:
        sys.path.remove(str(target))
        sys.modules.pop("prunec_demo_plugin", None)
        importlib.invalidate_caches()


def _install_by_hand(root: Path, dist: str, entry: str, module: str, code: str) -> None:
    """An installed distribution as pip leaves it: a module plus a .dist-info with entry points."""
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[prunec.plugins]\n{entry}\n")
    (root / f"{module}.py").write_text(code)


@pytest.fixture
def hand_installed(tmp_path: Path) -> Iterator[Path]:
    """A temporary site directory on sys.path for hand-made plugins."""
    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in ("clash_plugin", "broken_plugin", "func_plugin"):
            sys.modules.pop(name, None)
        importlib.invalidate_caches()


def test_plugin_is_discovered_with_its_distribution(demo_plugin: Path) -> None:
    """The entry point is found and loaded; its rule, criterion and pass carry the plugin's label."""
    loaded = load_plugins()
    assert [(p.name, p.value, p.distribution, p.version) for p in loaded] == [
        ("demo", "prunec_demo_plugin", "prunec-demo-plugin", "0.1.0")]
    mine = {(e.kind, e.name): e for e in extensions() if e.plugin}
    assert sorted(mine) == [("criterion", "demo-max-abs"), ("pass", "demo-drop-lowest"),
                            ("rule", "prunec_demo::channel_affine")]
    for e in mine.values():
        assert e.plugin == "plugin 'demo' (prunec-demo-plugin 0.1.0)"
        assert e.origin.startswith(e.plugin + " " + str(demo_plugin / "prunec_demo_plugin" / "__init__.py"))


def test_plugin_rule_criterion_and_pass_prune_a_model(demo_plugin: Path) -> None:
    """A model using the plugin's custom op prunes through it with the plugin's criterion and pass."""
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 10, 3, padding=1), nn.Conv2d(10, 4, 1)
            self.scale, self.shift = nn.Parameter(torch.rand(10) + 0.5), nn.Parameter(torch.randn(10))

        def forward(self, x):
            return self.b(torch.relu(torch.ops.prunec_demo.channel_affine(self.a(x), self.scale, self.shift)))

    torch.manual_seed(0)
    result = assert_prunes_equivalently(Net().eval(), torch.randn(2, 3, 8, 8),
                                        pipeline="demo-max-abs,demo-drop-lowest{count=3},rewrite-module,verify")
    assert result.report.pinned == () and result.report.channels_removed == 3
    assert result.model.scale.shape == (7,) and result.model.b.weight.shape == (4, 7, 1, 1)


def test_cli_lists_plugin_extensions_with_sources(demo_plugin: Path, capsys: pytest.CaptureFixture) -> None:
    """`prunec plugins --no-builtin` shows exactly the plugin's three entries and the plugin itself."""
    assert cli.main(["plugins", "--no-builtin"]) == 0
    out = capsys.readouterr().out
    label = "plugin 'demo' (prunec-demo-plugin 0.1.0)"
    assert f"op rules (1):\n  prunec_demo::channel_affine  {label} " in out
    assert f"passes (1):\n  demo-drop-lowest  {label} " in out
    assert f"criteria (1):\n  demo-max-abs  {label} " in out
    assert f"plugins (1):\n  {label}: demo = prunec_demo_plugin" in out


def test_cli_lists_builtins_by_kind(capsys: pytest.CaptureFixture) -> None:
    """`prunec plugins --kind pass` lists the built-in passes with their files inside prunec."""
    assert cli.main(["plugins", "--kind", "pass"]) == 0
    out = capsys.readouterr().out
    assert "select-uniform        built-in prunec/passes/select/uniform.py:" in out
    assert "op rules (" not in out and "criteria (" not in out  # no other kinds' sections


def test_plugin_clash_names_both_plugins(demo_plugin: Path, hand_installed: Path) -> None:
    """A second plugin registering the demo's criterion name fails, naming both plugins and files."""
    _install_by_hand(hand_installed, "clash-plugin", "clash = clash_plugin", "clash_plugin",
                     "import torch\nfrom dataclasses import dataclass\nimport prunec\n\n\n"
                     "@prunec.register_criterion('demo-max-abs')\n@dataclass(frozen=True)\n"
                     "class Copy(prunec.Criterion):\n    def score_slice(self, data):\n"
                     "        return torch.ones(data.weight.shape[0])\n")
    with pytest.raises(prunec.RuleConflictError,
                       match=r"while loading plugin 'clash' \(clash-plugin 0.1\): criterion name "
                             r"'demo-max-abs' is already taken by criterion MaxAbs from plugin 'demo' "
                             r"\(prunec-demo-plugin 0.1.0\) .*prunec_demo_plugin/__init__.py:\d+; the new "
                             r"criterion Copy is from plugin 'clash' \(clash-plugin 0.1\) "
                             r".*clash_plugin.py:\d+"):
        load_plugins(force=True)


def test_broken_plugin_is_a_plugin_error(hand_installed: Path) -> None:
    """A plugin that fails to import is named with its entry point and what to do."""
    _install_by_hand(hand_installed, "broken-plugin", "broken = broken_plugin", "broken_plugin",
                     "import no_such_module_anywhere\n")
    with pytest.raises(prunec.PluginError,
                       match=r"plugin 'broken' \(broken-plugin 0.1\) \(entry point broken = broken_plugin\) "
                             r"failed to load: ModuleNotFoundError: No module named "
                             r"'no_such_module_anywhere'\. "
                             r"Fix it, or uninstall 'broken-plugin' to run prunec without it"):
        load_plugins(force=True)


def test_function_entry_point_is_called(hand_installed: Path) -> None:
    """An entry point naming a function ('module:register') is called once after import."""
    _install_by_hand(hand_installed, "func-plugin", "func = func_plugin:register", "func_plugin",
                     "import prunec\nfrom prunec.rules import couple\n\n\ndef register():\n"
                     "    @prunec.op_rule('funcplug::identity')\n    def identity(node):\n"
                     "        return [couple(node.input(0).channel, node.output(0).channel)]\n")
    load_plugins(force=True)
    from prunec.rules import RULES

    entry = RULES.get("funcplug::identity")
    assert entry is not None and "plugin 'func' (func-plugin 0.1)" in describe_source(entry.source)
