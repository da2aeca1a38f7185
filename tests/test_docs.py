"""The documentation runs: the tutorial's and the README's code blocks, and the README's test command."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

from prunec.plugins import isolated_registries

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def code_blocks(path: Path, language: str) -> list[tuple[int, str]]:
    """(first line number, code) of every fenced block of `language` in a Markdown file."""
    text = path.read_text(encoding="utf-8")
    out = []
    for m in FENCE.finditer(text):
        if m.group(1) == language:
            out.append((text.count("\n", 0, m.start(2)) + 1, m.group(2)))
    return out


def run_blocks(path: Path, module_name: str) -> dict[str, object]:
    """Execute a file's python blocks in order as one module; line numbers match the file."""
    module = types.ModuleType(module_name)  # dataclasses look their module up in sys.modules
    sys.modules[module_name] = module
    try:
        for line, code in code_blocks(path, "python"):
            source = "\n" * (line - 1) + code
            exec(compile(source, str(path), "exec"), module.__dict__)
    finally:
        del sys.modules[module_name]
    return module.__dict__


def test_writing_passes_tutorial_runs() -> None:
    """Every python block of docs/WRITING_PASSES.md runs in order and its asserts hold."""
    with isolated_registries():
        ns = run_blocks(ROOT / "docs" / "WRITING_PASSES.md", "writing_passes_tutorial")
    assert len(code_blocks(ROOT / "docs" / "WRITING_PASSES.md", "python")) >= 8
    result = ns["result"]
    assert result.verification.passed  # type: ignore[attr-defined]


def test_tutorial_line_counts_match_the_table() -> None:
    """The 'What you write' table states the true number of lines of each extension."""
    doc = (ROOT / "docs" / "WRITING_PASSES.md").read_text(encoding="utf-8")
    table = dict(re.findall(r"^\| [^|]*\(`(\w+)`[^|]*\| (\d+) \|$", doc, re.M))
    assert set(table) == {"fused_conv_bn_relu_rule", "channel_gate_rule", "TopKAbs", "SelectBelowMean"}
    code = "\n".join(c for _, c in code_blocks(ROOT / "docs" / "WRITING_PASSES.md", "python"))
    for name, count in table.items():
        lines = code.splitlines()
        head = next(i for i, ln in enumerate(lines) if re.match(rf"(def|class) {name}\b", ln))
        start, end = head, head + 1
        while start > 0 and lines[start - 1].startswith("@"):
            start -= 1
        while end < len(lines) and (lines[end].startswith((" ", "\t")) or not lines[end].strip()):
            end += 1
        while not lines[end - 1].strip():
            end -= 1
        assert end - start == int(count), f"{name}: table says {count} lines, the code has {end - start}"


def test_readme_python_block_runs() -> None:
    """The README's Python example runs as written."""
    with isolated_registries():
        ns = run_blocks(ROOT / "README.md", "readme")
    assert ns["result"].verification.passed  # type: ignore[attr-defined]


def test_readme_test_command_is_the_ci_command() -> None:
    """The README's command to run the tests is exactly what .ci/run executes."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"Install and run the tests:\s*\n\s*```\w*\n(.+?)\n```", readme, re.S)
    assert m is not None, "README lost its 'Install and run the tests:' block"
    command = m.group(1).strip()
    ci = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    plumbing = ("#", "echo", "set ", "cd ", "for ", "printf", "done")
    runs = [ln for ln in ci if ln and not ln.startswith(plumbing)]
    assert command in runs, f"README command {command!r} is not a line of .ci/run: {runs}"


def test_architecture_pipelines_parse() -> None:
    """Pipeline strings quoted in docs/ARCHITECTURE.md parse with the built-in passes and criteria."""
    import prunec.passes  # noqa: F401  -- registers the built-ins

    from prunec.pipeline import parse_pipeline

    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    pipelines = re.findall(r'"((?:[a-z0-9-]+(?:\{[^}"]*\})?,)+[a-z0-9-]+(?:\{[^}"]*\})?)"', text)
    assert pipelines, "ARCHITECTURE.md quotes no pipeline"
    for p in pipelines:
        assert [q.key for q in parse_pipeline(p)][-1] == p.rsplit(",", 1)[-1].split("{")[0]
