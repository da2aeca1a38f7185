"""The package installs with its mapped sub-packages (prunec.passes, prunec.zoo), editable or not."""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {"prunec": "prunec", "prunec.passes": "passes", "prunec.zoo": "models_zoo"}


def _declared_packages() -> set[str]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return set(tomllib.load(f)["tool"]["setuptools"]["packages"])


def test_every_package_directory_is_declared():
    """Each directory with an __init__.py under the mapped roots is listed in pyproject.toml."""
    found = set()
    for pkg, folder in MAPPED.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            if "__pycache__" in rel.parts:
                continue
            found.add(".".join([pkg, *rel.parts]) if rel.parts else pkg)
    missing = found - _declared_packages()
    assert not missing, f"add to [tool.setuptools] packages: {sorted(missing)}"


def test_non_editable_install_has_mapped_packages(tmp_path):
    """`pip install .` (not editable) puts passes/ at prunec/passes and models_zoo/ at prunec/zoo."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(ROOT)], check=True, capture_output=True)
    assert (target / "prunec" / "passes" / "criteria" / "magnitude.py").exists()
    assert (target / "prunec" / "zoo" / "resnet.py").exists()
    code = ("import prunec, prunec.passes, prunec.zoo; "
            "from prunec.zoo import ZOO; e = ZOO['resnet_basic']; "
            "a = prunec.analyze(e.build(), e.example_inputs()); "
            "print(prunec.__file__); print(len(a.groups))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(target)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         cwd=tmp_path, env=env).stdout.split()
    assert out[0].startswith(str(target)), "imported prunec from the checkout, not the install"
    assert int(out[1]) == 9  # resnet_basic: stem+stage groups and block-internal groups
