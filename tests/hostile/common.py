"""Small models and 'nothing changed' snapshots shared by the hostile-input tests."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from tests.helpers import state_hash


class SmallNet(nn.Module):
    """conv-bn-relu-dropout-conv-pool-linear: prunable, with BN statistics and dropout."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.drop = nn.Dropout(0.5)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(torch.relu(self.bn(self.conv1(x))))
        return self.fc(torch.relu(self.conv2(x)).mean((2, 3)))


def small() -> tuple[SmallNet, torch.Tensor]:
    """A seeded SmallNet in eval mode and an input batch."""
    torch.manual_seed(0)
    model = SmallNet().eval()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.1, 0.1)
        model.bn.running_var.uniform_(0.5, 1.5)
    return model, torch.randn(2, 3, 8, 8)


def snapshot(model: nn.Module) -> tuple[str, str, tuple[bool, ...]]:
    """State bytes, module structure (sizes) and training flags: what 'untouched' means."""
    if any(t.device.type == "meta" for t in model.state_dict().values()):
        weights = str([(k, tuple(v.shape), v.dtype) for k, v in model.state_dict().items()])
    else:
        weights = state_hash(model)
    return weights, repr(model), tuple(m.training for m in model.modules())


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under `root` (hidden ones included) with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def tree_names(root: Path) -> list[str]:
    """Every path under `root`, files and directories, hidden ones included."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))
