"""Models torch.export cannot trace: TraceError names the construct and where it is, and suggests
the fallbacks; the model is untouched.
"""

import pytest
import torch
from torch import nn

import prunec
from tests.hostile.common import snapshot


class _Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)

    def forward(self, x):
        y = self.conv(x)
        if y.sum() > 0:  # data-dependent control flow
            return y * 2
        return y


class _ToNumpy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)

    def forward(self, x):
        y = self.conv(x)
        return y * float(y.detach().numpy().mean())


class _ItemSize(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)

    def forward(self, x):
        y = self.conv(x)
        n = int(y.argmax().item())
        return y[:, : n % 4 + 1]


FALLBACK = (r"Rewrite that construct with tensor ops \(torch.where, torch.cond\), move it into a "
            r"torch.library custom op .*or prune a submodule that traces: prunec.prune\(model.<child>")


@pytest.mark.parametrize("cls, construct, line", [
    (_Branchy, r"data-dependent control flow or sizes", r"if y.sum\(\) > 0:"),
    (_ToNumpy, r"a conversion of a tensor to NumPy", r"return y \* float\(y.detach\(\).numpy\(\).mean\(\)\)"),
    (_ItemSize, r"data-dependent control flow or sizes", r"n = int\(y.argmax\(\).item\(\)\)"),
])
def test_untraceable_model_names_construct_line_and_fallback(cls, construct, line):
    """The message: what blocked tracing, the file:line and code of it, and what to do instead."""
    model = cls().eval()
    before = snapshot(model)
    with pytest.raises(prunec.TraceError, match=rf"could not trace {cls.__name__} on inputs "
                                                rf"\(\(2, 3, 4, 4\):float32\): {construct}.*, at "
                                                rf".*test_trace.py:\d+ in forward: {line}.*{FALLBACK}"):
        prunec.prune(model, torch.randn(2, 3, 4, 4), ratio=0.5)
    assert snapshot(model) == before


def test_untraceable_model_fails_analyze_the_same_way():
    """analyze() raises the same TraceError (it traces the same way)."""
    with pytest.raises(prunec.TraceError, match="data-dependent control flow"):
        prunec.analyze(_Branchy().eval(), torch.randn(2, 3, 4, 4))


class _LayoutTrap(nn.Module):
    """Eager execution makes the pooled map channels-last here while tracing predicts contiguous, so
    torch.export drops the .contiguous() and the traced program's .view() fails.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1, groups=2)
        self.norm = nn.RMSNorm(4)
        self.up = nn.ConvTranspose2d(4, 4, 1)
        self.gn = nn.GroupNorm(2, 4)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        y = nn.functional.hardswish(self.norm(self.conv(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
        y = torch.relu(self.gn(self.up(y))) + y
        y = nn.functional.adaptive_avg_pool2d(y, 2)
        return self.fc(y.contiguous().view(y.shape[0], -1))


def test_traced_program_that_fails_where_eager_runs():
    """torch.export's program is run once on the example inputs; where it fails, TraceError names the
    node and the line of user code, and suggests .reshape(). The recording (the default tracer) runs
    the eager code: it analyses the same model (whose every channel is tied to the input through the
    grouped conv and the residual, so nothing is removed) and verifies the result.
    """
    model = _LayoutTrap().eval()
    x = torch.randn(2, 2, 8, 8)
    with torch.no_grad():
        model(x)  # eager execution is fine
    before = snapshot(model)
    with pytest.raises(prunec.TraceError, match=r"torch.export traced _LayoutTrap, but the traced program fails "
                                                r"on the same inputs \(\(2, 2, 8, 8\):float32\) at node 'view' "
                                                r"\(from .*test_trace.py.*, in forward: return self.fc\(y.contiguous"
                                                r"\(\).view.*view size is not compatible.*use .reshape\(\) there"):
        prunec.prune(model, x, ratio=0.5, tracer="export")
    assert snapshot(model) == before
    result = prunec.prune(model, x, ratio=0.5)
    assert result.analysis.source.tracer == "record"
    assert result.verification.passed and result.verification.max_relative_diff <= 1e-4
    assert result.removed == () and prunec.count_params(result.model) == prunec.count_params(model)
    reasons = {p.reason for p in result.analysis.pinned_params}
    assert reasons == {"model input", "model output"}
    assert snapshot(model) == before
