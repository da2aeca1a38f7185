import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


GOLDEN_DIR = os.path.join(os.path.dirname(__file__), "golden")


def pytest_addoption(parser):
    """--update-golden rewrites tests/golden/*.txt from the current output instead of comparing."""
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite the golden files in tests/golden from the current output")


@pytest.fixture
def golden(request):
    """check(name, text): compare `text` with tests/golden/<name>, or rewrite it with --update-golden."""
    update = request.config.getoption("--update-golden")

    def check(name: str, text: str) -> None:
        path = os.path.join(GOLDEN_DIR, name)
        if update:
            os.makedirs(GOLDEN_DIR, exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            return
        if not os.path.exists(path):
            pytest.fail(f"golden file {path} is missing; create it with pytest --update-golden")
        with open(path, encoding="utf-8") as f:
            expected = f.read()
        if text != expected:
            import difflib

            diff = "\n".join(difflib.unified_diff(expected.splitlines(), text.splitlines(), "golden", "now",
                                                  lineterm="", n=2))
            pytest.fail(f"output differs from {path} (refresh with pytest --update-golden if intended):"
                        f"\n{diff}")

    return check
