"""The `prunec` command run as a subprocess on real files: outputs, reports, exit codes, clean failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest

from prunec.cli import EXIT_BAD_INPUT, EXIT_OK, EXIT_VERIFY, main
from tests.onnx.helpers import export_zoo, params, run
from tests.onnx.test_onnx_errors import lrn_model
from tests.onnx.test_onnx_ops import case_slice


def prunec_cli(*args: str, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m prunec ARGS` and capture its output."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "prunec", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300, check=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A resnet exported from the zoo, a model with an op that has no rule, and broken files."""
    d = tmp_path_factory.mktemp("cli_inputs")
    resnet = export_zoo("resnet_basic", str(d))
    lrn = str(d / "lrn.onnx")
    onnx.save(lrn_model(), lrn)
    data = Path(resnet).read_bytes()
    (d / "truncated.onnx").write_bytes(data[: len(data) // 2])
    corrupt = bytearray(data)
    corrupt[40:400] = bytes((b * 7 + 13) % 256 for b in corrupt[40:400])
    (d / "corrupt.onnx").write_bytes(bytes(corrupt))
    (d / "notes.onnx").write_text("these are my notes, not a model\n")
    return {"resnet": resnet, "lrn": lrn, "truncated": str(d / "truncated.onnx"),
            "corrupt": str(d / "corrupt.onnx"), "text": str(d / "notes.onnx"), "impossible": lrn}


def test_prune_writes_model_markdown_report_and_plot(files, tmp_path):
    """Prune -o --report md --plot: exit 0, a smaller verified model, a report that links the PNG chart."""
    out, report = str(tmp_path / "small.onnx"), str(tmp_path / "report.md")
    proc = prunec_cli("prune", files["resnet"], "-o", out, "--target", "macs=0.5", "--round-to", "8",
                      "--report", report, "--plot")
    assert proc.returncode == EXIT_OK, proc.stderr
    assert "verification passed" in proc.stdout and f"wrote {out}, {report}" in proc.stdout
    pruned = onnx.load(out)
    assert params(pruned) < 0.6 * params(onnx.load(files["resnet"]))
    assert run(pruned, {"x": np.zeros((4, 3, 32, 32), np.float32)})[0].shape == (4, 10)
    text = Path(report).read_text()
    assert "| MACs |" in text and "![channels per layer](report_channels.png)" in text
    assert (tmp_path / "report_channels.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_quiet_prune_with_json_report(files, tmp_path):
    """--quiet prints nothing; the JSON report lists every removed slice and the verification."""
    out, report = str(tmp_path / "small.onnx"), str(tmp_path / "report.json")
    proc = prunec_cli("prune", files["resnet"], "-o", out, "--target", "ratio=0.5", "--report", report, "-q")
    assert proc.returncode == EXIT_OK, proc.stderr
    assert proc.stdout == ""
    data = json.loads(Path(report).read_text())
    assert data["verification"]["passed"] is True and data["params_after"] == params(onnx.load(out))
    removed = sum(len(m["indices"]) for g in data["removed"] for m in g["members"] if m["dim"] == 0)
    assert removed > 0 and data["channels_removed"] == sum(len(g["channels"]) for g in data["removed"])


def test_inspect_shows_groups_pins_and_share(files):
    """Inspect prints the groups, each pinned node with its reason, and the prunable share."""
    proc = prunec_cli("inspect", files["lrn"])
    assert proc.returncode == EXIT_OK, proc.stderr
    assert "groups (1, 8 channels):" in proc.stdout
    assert "lrn [onnx::LRN] (module 'lrn'): no op rule for 'onnx::LRN'" in proc.stdout
    assert "prunable share: " in proc.stdout


def test_help_is_followable():
    """`prunec prune --help` shows the flags, examples and exit codes."""
    proc = prunec_cli("prune", "--help")
    assert proc.returncode == EXIT_OK
    for text in ("--target KIND=VALUE", "--round-to N", "--report FILE.md|FILE.json", "--plot", "--ignore NODE",
                 "prunec prune model.onnx -o small.onnx --target macs=0.5", "exit codes: 0 ok, 2 bad input"):
        assert text in proc.stdout


BAD_INPUTS = {
    "text": (["--target", "ratio=0.5"], r"error: OnnxModelError: '{path}' is not a readable ONNX model "
                                        r"\(DecodeError: .*\); the file may be truncated, corrupt, or not an ONNX file"),
    "truncated": (["--target", "ratio=0.5"], r"error: OnnxModelError: '{path}' is not a readable ONNX model "
                                             r"\(DecodeError: .*\); the file may be truncated, corrupt, or not an "
                                             r"ONNX file"),
    "corrupt": (["--target", "ratio=0.5"], r"error: OnnxModelError: '{path}' is not a readable ONNX model"),
    "lrn": (["--target", "ratio=0.5", "--strict"], r"error: UnsupportedOpError: 1 node\(s\) cannot be analysed: "
                                                   r"lrn \[onnx::LRN\] \(module 'lrn'\): no op rule for 'onnx::LRN'"),
    "impossible": (["--target", "macs=0.01"], r"error: TargetError: macs=0\.01 cannot be reached: removing 99% of "
                                          r"every prunable group still keeps .* The closest achievable target is "
                                          r"macs=0\.\d+\."),
}


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_bad_input_exits_2_with_message_and_no_output(files, tmp_path, kind):
    """Corrupt, truncated and non-ONNX files, an op without rule (--strict), an impossible target:
    exit 2, the exact message, and nothing written.
    """
    import re

    flags, message = BAD_INPUTS[kind]
    out = tmp_path / "out.onnx"
    proc = prunec_cli("prune", files[kind], "-o", str(out), "--report", str(tmp_path / "r.md"), "--plot", *flags)
    assert proc.returncode == EXIT_BAD_INPUT
    assert re.search(message.format(path=re.escape(files[kind])), proc.stderr), proc.stderr
    assert os.listdir(tmp_path) == []


def test_verification_failure_exits_3_and_writes_nothing(tmp_path, monkeypatch, capsys):
    """A rewrite that breaks the model fails verification: exit 3, the reason, no output files."""
    from prunec.rewrite import to_onnx

    model = str(tmp_path / "slice.onnx")
    onnx.save(case_slice(), model)
    monkeypatch.setitem(to_onnx.RESIZERS, "onnx::Slice", lambda ctx: to_onnx.Edit())
    code = main(["prune", model, "-o", str(tmp_path / "out.onnx"), "--target", "ratio=0.5", "--report",
                 str(tmp_path / "r.json"), "-q"])
    assert code == EXIT_VERIFY
    assert "error: the pruned ONNX model does not match its reference" in capsys.readouterr().err
    assert os.listdir(tmp_path) == ["slice.onnx"]


@pytest.mark.parametrize(("argv", "message"), [
    (["--target", "ratio=0.5", "--report", "r.txt"], r"--report 'r.txt': use a \.md \(Markdown\) or \.json file name"),
    (["--target", "fast"], r"target 'fast' must look like 'macs=0\.5', 'params=0\.5', 'latency=0\.5' or 'ratio=0\.5'"),
    (["--target", "ratio=0.5", "--input-shape", "1,3,a"], r"--input-shape '1,3,a': expected comma-separated integers"),
    (["--target", "ratio=0.5", "--ignore", "conv9"], r"ignore= names 'conv9', which matches no node"),
])
def test_bad_flags_exit_2(tmp_path, monkeypatch, capsys, argv, message):
    """Bad flag values are reported with what to write instead (exit 2), before any work is done."""
    import re

    model = str(tmp_path / "lrn.onnx")
    onnx.save(lrn_model(), model)
    monkeypatch.chdir(tmp_path)
    assert main(["prune", model, "-o", str(tmp_path / "out.onnx"), *argv]) == EXIT_BAD_INPUT
    assert re.search(message, capsys.readouterr().err)
    assert sorted(os.listdir(tmp_path)) == ["lrn.onnx"]


FACTORY = textwrap.dedent("""
    import torch
    from torch import nn

    def build():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 4, 1)).eval()

    def build_with_inputs():
        return build(), torch.randn(2, 3, 8, 8)

    def build_no_inputs_no_module():
        return 42
""")


def test_prune_torch_factory_saves_a_smaller_module(tmp_path):
    """`prunec prune pkg.module:factory -o small.pt --input-shape ...` writes a loadable, smaller module."""
    import torch

    (tmp_path / "my_models.py").write_text(FACTORY)
    proc = prunec_cli("prune", "my_models:build", "-o", "small.pt", "--target", "ratio=0.5", "--input-shape",
                      "1,3,8,8", cwd=str(tmp_path))
    assert proc.returncode == EXIT_OK, proc.stderr
    model = torch.load(str(tmp_path / "small.pt"), weights_only=False)
    assert model[0].out_channels == 8 and model[3].in_channels == 8
    assert "verification passed" in proc.stdout


def test_inspect_torch_factory_with_its_own_inputs(tmp_path, monkeypatch, capsys):
    """A factory returning (module, inputs) needs no --input-shape."""
    (tmp_path / "my_models.py").write_text(FACTORY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    monkeypatch.delitem(sys.modules, "my_models", raising=False)
    assert main(["inspect", "my_models:build_with_inputs"]) == EXIT_OK
    assert "groups (1, 16 channels):" in capsys.readouterr().out


@pytest.mark.parametrize(("spec", "message"), [
    ("my_models:build", r"model 'my_models:build' needs --input-shape, e\.g\. --input-shape 1,3,32,32"),
    ("my_models:build_no_inputs_no_module", r"returned int; it must return a torch\.nn\.Module or a tuple"),
    ("my_models:nothing", r"cannot load 'my_models:nothing' with input shape '': module 'my_models' has no "
                          r"attribute 'nothing'"),
    ("not_a_module:build", r"cannot load 'not_a_module:build' with input shape '': No module named 'not_a_module'"),
])
def test_bad_factories_exit_2(tmp_path, monkeypatch, capsys, spec, message):
    """Factories that cannot be imported, called or fed are reported with the fix (exit 2)."""
    import re

    (tmp_path / "my_models.py").write_text(FACTORY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    monkeypatch.delitem(sys.modules, "my_models", raising=False)
    assert main(["inspect", spec]) == EXIT_BAD_INPUT
    assert re.search(message, capsys.readouterr().err)
