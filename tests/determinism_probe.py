"""Prints a digest of analyses and pruned weights (run by tests/test_determinism.py in subprocesses)."""

import hashlib
import sys

import torch
from prunec.zoo import ZOO

import prunec


def digest(name: str) -> str:
    """sha256 of the analysis text, the removed slices, the report's pins and the pruned state."""
    entry = ZOO[name]
    model, x = entry.build(), entry.example_inputs()
    ignore = ["layers.1"] if name == "resnet_basic" else ()
    result = prunec.prune(model, x, ratio=0.4, verify=False, ignore=ignore)
    h = hashlib.sha256()
    h.update(str(result.analysis).encode())
    h.update(repr([(g.group_id, g.channels, g.members) for g in result.removed]).encode())
    h.update(repr([(p.param, p.dim, p.reason) for p in result.report.pinned_params]).encode())
    for k, v in result.model.state_dict().items():
        h.update(k.encode() + str(tuple(v.shape)).encode() + v.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


if __name__ == "__main__":
    torch.set_num_threads(1)
    for name in sys.argv[1:]:
        print(name, digest(name))
