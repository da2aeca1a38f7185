"""DistributedDataParallel: two CPU ranks (gloo) end with the same zero groups and the same weights."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from prunec.passes.optimizers import HESSO
from torch.nn.parallel import DistributedDataParallel

import prunec
from tests.optimizers.nets import image_batch, tiny_conv

STEPS = 16


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model = tiny_conv(seed=0)
        analysis = prunec.analyze(model, image_batch(0, 2)[0])
        ddp = DistributedDataParallel(model)
        # rank 1 ranks channels by magnitude alone: left to itself it would choose other channels
        criteria = None if rank == 0 else {"magnitude": 1.0}
        opt = HESSO(model, analysis, "macs=0.5", steps=STEPS, lr=0.05, momentum=0.9, criteria=criteria)
        for step in range(STEPS):
            x, y = image_batch(100 * rank + step)  # each rank sees its own data
            loss = torch.nn.functional.cross_entropy(ddp(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        # parameters only: DDP syncs BN running stats at the start of a forward, so after the last
        # forward each rank holds its own statistics (standard DDP behaviour)
        params = {n: p.detach() for n, p in model.named_parameters()}
        torch.save({"zero": opt.zero_groups(), "params": params, "finished": opt.finished},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_ranks_agree_on_zero_groups_and_weights(tmp_path):
    """Under DDP on gloo, both ranks finish with identical zero groups and bit-identical weights."""
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    assert r0["finished"] and r1["finished"]
    assert r0["zero"] == r1["zero"] and sum(len(c) for c in r0["zero"].values()) > 0
    assert len(r0["params"]) == 8
    for name, value in r0["params"].items():
        assert torch.equal(value, r1["params"][name]), name
