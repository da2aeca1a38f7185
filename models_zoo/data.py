"""Data shipped with installed packages (nothing is downloaded): digits images, stdlib source text."""

from __future__ import annotations

import os
import sysconfig
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Split:
    """Inputs and labels of one split."""

    x: torch.Tensor
    y: torch.Tensor


def digits(size: int = 16, seed: int = 0, test_fraction: float = 0.25) -> tuple[Split, Split]:
    """scikit-learn's 1,797 8x8 digits, upsampled to `size`x`size`, normalized, split train/test."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    if size != 8:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = (x - x.mean()) / x.std()
    y = torch.tensor(data.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = int(len(y) * test_fraction)
    test, train = perm[:n_test], perm[n_test:]
    return Split(x[train], y[train]), Split(x[test], y[test])


def stdlib_text(max_chars: int = 2_000_000, seed: int = 0) -> str:
    """Concatenated source of Python's own standard library modules (deterministic order)."""
    root = sysconfig.get_paths()["stdlib"]
    files = []
    for name in sorted(os.listdir(root)):
        if name.endswith(".py"):
            files.append(os.path.join(root, name))
    chunks, total = [], 0
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (UnicodeDecodeError, OSError):
            continue
        chunks.append(text)
        total += len(text)
        if total >= max_chars:
            break
    return "".join(chunks)[:max_chars]


@dataclass(frozen=True)
class CharCorpus:
    """A character-level corpus: vocabulary and encoded train/validation streams."""

    chars: str
    train: torch.Tensor
    val: torch.Tensor

    @property
    def vocab_size(self) -> int:
        """Number of distinct characters."""
        return len(self.chars)

    def batch(self, split: str, batch_size: int, block: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Random (inputs, next-char targets) windows of length `block`."""
        data = self.train if split == "train" else self.val
        ix = torch.randint(len(data) - block - 1, (batch_size,), generator=generator)
        x = torch.stack([data[i: i + block] for i in ix.tolist()])
        y = torch.stack([data[i + 1: i + block + 1] for i in ix.tolist()])
        return x, y


def char_corpus(max_chars: int = 2_000_000, val_fraction: float = 0.1) -> CharCorpus:
    """Python standard-library source as a character-level corpus (printable ASCII + newline)."""
    text = stdlib_text(max_chars)
    text = "".join(c if (32 <= ord(c) < 127 or c == "\n") else " " for c in text)
    chars = "".join(sorted(set(text)))
    index = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([index[c] for c in text], dtype=torch.long)
    n_val = int(len(data) * val_fraction)
    return CharCorpus(chars, data[:-n_val], data[-n_val:])
