"""Measured speed-up of models pruned to 50% of their MACs, on the device this runs on.

    python bench/latency.py                  # all models, CPU: batch 1 and 32, torch and onnxruntime
    python bench/latency.py --models resnet50,mobilenet_v2 --no-onnx

For ResNet-50, MobileNetV2, ViT-B/16 (torchvision, random weights) and a Llama-style decoder block,
prunes to macs=0.5 with round_to=8 (L2, uniform) and prints the MACs ratio next to the measured
latency ratio, dense over pruned, for each batch size and runtime, and `eff` = speed-up divided by
the MACs reduction (1.0: latency fell exactly as MACs did). Then it prunes ResNet-50 and
MobileNetV2 with target='latency=0.5' (per-op latency tables measured at four widths, cached) and
prints the target next to the measured latency ratio.

The same script runs unchanged on a GPU: with CUDA available it uses fp16, batch 1 and 64, and
onnxruntime only if its CUDA provider is installed. Timings are the fastest of interleaved runs
(dense, pruned, dense, ...), so a drifting machine load hits both alike.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

import prunec


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned scale."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class LlamaBlock(nn.Module):
    """A Llama-style decoder block: RMSNorm, grouped-query attention with RoPE, SwiGLU MLP."""

    def __init__(self, dim: int = 1024, heads: int = 16, kv_heads: int = 4, ffn: int = 2816,
                 seq: int = 128) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, dim // heads
        self.norm1, self.norm2 = RMSNorm(dim), RMSNorm(dim)
        self.q = nn.Linear(dim, heads * self.head_dim, bias=False)
        self.k = nn.Linear(dim, kv_heads * self.head_dim, bias=False)
        self.v = nn.Linear(dim, kv_heads * self.head_dim, bias=False)
        self.o = nn.Linear(heads * self.head_dim, dim, bias=False)
        self.gate = nn.Linear(dim, ffn, bias=False)
        self.up = nn.Linear(dim, ffn, bias=False)
        self.down = nn.Linear(ffn, dim, bias=False)
        inv = 1.0 / (10000 ** (torch.arange(0, self.head_dim, 2).float() / self.head_dim))
        angles = torch.outer(torch.arange(seq).float(), inv)
        emb = torch.cat((angles, angles), dim=-1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        h = self.norm1(x)
        q = self.q(h).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k(h).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v(h).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        q = q * self.cos + _rotate_half(q) * self.sin
        k = k * self.cos + _rotate_half(k) * self.sin
        rep = self.heads // self.kv_heads
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.o(y.transpose(1, 2).reshape(b, t, self.heads * self.head_dim))
        h = self.norm2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


@dataclass(frozen=True)
class Case:
    """A model to prune and the shape of one input sample."""

    name: str
    build: Callable[[], nn.Module]
    sample: tuple[int, ...]


def cases() -> dict[str, Case]:
    """The models of the table (torchvision with random weights, and the Llama-style block)."""
    import torchvision

    return {
        "resnet50": Case("ResNet-50", lambda: torchvision.models.resnet50(), (3, 224, 224)),
        "mobilenet_v2": Case("MobileNetV2", lambda: torchvision.models.mobilenet_v2(), (3, 224, 224)),
        "vit_b_16": Case("ViT-B/16", lambda: torchvision.models.vit_b_16(), (3, 224, 224)),
        "llama_block": Case("Llama block", lambda: LlamaBlock(), (128, 1024)),
    }


def sync(device: torch.device) -> None:
    """Wait for queued accelerator work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(fa: Callable[[], object], fb: Callable[[], object], reps: int, device: torch.device
                ) -> tuple[float, float]:
    """Fastest seconds of fa and fb, timed alternately after one warm-up each.

    The minimum, not the median: load from other processes on a shared machine only ever adds
    time. Calls slower than two seconds get at most 3 reps, to keep the bench bounded.
    """
    sync(device)
    t0 = time.perf_counter()
    fa()
    sync(device)
    if time.perf_counter() - t0 > 2.0:
        reps = min(reps, 3)
    fb()
    ta, tb = [], []
    for _ in range(reps):
        for f, out in ((fa, ta), (fb, tb)):
            sync(device)
            t0 = time.perf_counter()
            f()
            sync(device)
            out.append(time.perf_counter() - t0)
    return min(ta), min(tb)


def onnx_session(model: nn.Module, x: torch.Tensor, threads: int, gpu: bool):
    """An onnxruntime session of `model` exported on `x` (None when export or the runtime fails)."""
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if gpu:
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return None
        providers = ["CUDAExecutionProvider"]
    buf = io.BytesIO()
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # the fused MHA kernel has no ONNX export
    quiet = io.StringIO()
    try:
        with torch.no_grad(), contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=17)
    except Exception as exc:  # a bench reports what it could not measure
        print(f"    onnx export failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
        return None
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(buf.getvalue(), opts, providers=providers)
    name = sess.get_inputs()[0].name
    feed = {name: x.detach().cpu().numpy()}
    return lambda: sess.run(None, feed)


def prune_for(case: Case, dense: nn.Module, batch: int, cache: dict, **kwargs) -> prunec.PruneResult:
    """macs=0.5 pruning on a batch-1 trace; GraphModule outputs are specialised to their trace's
    batch, so those are pruned again at the batch being timed (same scores, same architecture).
    """
    key = 1
    if key not in cache:
        cache[key] = prunec.prune(dense, torch.randn(1, *case.sample), **kwargs)
    if cache[key].output_kind == "graph_module" and batch != 1:
        if batch not in cache:
            cache[batch] = prunec.prune(dense, torch.randn(batch, *case.sample), **kwargs)
        return cache[batch]
    return cache[key]


def run_case(case: Case, batches: list[int], device: torch.device, dtype: torch.dtype, reps: int,
             threads: int, use_onnx: bool) -> list[str]:
    """Rows of the table for one model."""
    torch.manual_seed(0)
    dense = case.build().eval()
    t0 = time.time()
    results: dict = {}
    rows = []
    for batch in batches:
        result = prune_for(case, dense, batch, results, target="macs=0.5", round_to=8)
        ratio = result.report.macs_ratio
        x = torch.randn(batch, *case.sample)
        d = copy.deepcopy(dense).to(device, dtype).eval()
        p = copy.deepcopy(result.model).to(device, dtype).eval()
        xd = x.to(device, dtype)
        with torch.no_grad():
            td, tp = interleaved(lambda d=d, xd=xd: d(xd), lambda p=p, xd=xd: p(xd), reps, device)
        line = (f"{case.name:<12} {ratio:>6.3f} {batch:>5}  torch {td * 1e3:>9.1f} {tp * 1e3:>9.1f} "
                f"{td / tp:>6.2f}x eff {td / tp * ratio:>4.2f}")
        if use_onnx:
            sd = onnx_session(d, xd, threads, device.type == "cuda")
            sp = onnx_session(p, xd, threads, device.type == "cuda") if sd else None
            if sd and sp:
                od, op = interleaved(sd, sp, reps, device)
                line += (f"  |  ort {od * 1e3:>9.1f} {op * 1e3:>9.1f} {od / op:>6.2f}x "
                         f"eff {od / op * ratio:>4.2f}")
            else:
                line += "  |  ort n/a"
        rows.append(line)
        print(line, flush=True)
    print(f"    ({case.name}: {results[1].output_kind} output, {time.time() - t0:.0f}s)", flush=True)
    return rows


def latency_target(case: Case, device: torch.device, dtype: torch.dtype, batch: int, reps: int) -> str:
    """Prune with target='latency=0.5' on this device and measure the result against the dense model."""
    torch.manual_seed(0)
    dense = case.build().eval().to(device, dtype)
    x = torch.randn(batch, *case.sample).to(device, dtype)
    t0 = time.time()
    tol = 1e-4 if dtype == torch.float32 else 1e-2
    result = prunec.prune(dense, x, target="latency=0.5", round_to=8, tolerance=tol)
    build = time.time() - t0
    p = result.model.to(device, dtype).eval()
    with torch.no_grad():
        td, tp = interleaved(lambda: dense(x), lambda: p(x), reps, device)
    note = next(n for n in result.report.notes if n.startswith("latency"))
    return (f"{case.name:<12} batch {batch:>3}: target 0.500, measured here {tp / td:.3f} "
            f"(off by {abs(tp / td - 0.5) / 0.5:.1%}), MACs kept {result.report.macs_ratio:.3f}; "
            f"[{note}] ({build:.0f}s incl. table)")


def main(argv: list[str] | None = None) -> None:
    """Print the table for the chosen models."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="resnet50,mobilenet_v2,vit_b_16,llama_block")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--no-onnx", action="store_true")
    ap.add_argument("--no-latency-target", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    gpu = torch.cuda.is_available()
    device = torch.device("cuda" if gpu else "cpu")
    dtype = torch.float16 if gpu else torch.float32
    batches = [1, 64] if gpu else [1, 32]
    name = torch.cuda.get_device_name(device) if gpu else f"CPU, {args.threads} threads"
    print(f"device: {name}; dtype {str(dtype).replace('torch.', '')}; torch {torch.__version__}; "
          f"{args.reps} interleaved reps, fastest; macs=0.5, round_to=8, L2, uniform\n")
    print(f"{'model':<12} {'MACs':>6} {'batch':>5}  runtime {'dense ms':>9} {'pruned ms':>9} {'speedup':>7}")
    t0 = time.time()
    chosen = cases()
    for key in args.models.split(","):
        run_case(chosen[key], batches, device, dtype, args.reps, args.threads, not args.no_onnx)
    if not args.no_latency_target:
        print("\nlatency targets (per-op tables at widths 1/0.75/0.5/0.25, then measured end to end):")
        batch = batches[-1] if gpu else 1  # a GPU at batch 1 mostly measures kernel launches
        for key in ("resnet50", "mobilenet_v2"):
            if key in args.models.split(","):
                print(latency_target(chosen[key], device, dtype, batch, 3 * args.reps), flush=True)
    print(f"\ntotal {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main(sys.argv[1:])
