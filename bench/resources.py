"""Resource safety: analysis of big models stays within stated memory.

Cases: a 1,000-layer model (analysis, and a full prune), and a Llama-7B-shaped model on meta tensors.

    python bench/resources.py            # every case, each in its own interpreter
    python bench/resources.py --case llama7b_meta

Each case runs in a fresh subprocess; it reports the peak resident memory (ru_maxrss) of that
process before and after the measured step, and the wall time. The limit is on the increase over
the baseline (torch imported, model built), i.e. what prunec itself needs.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

GIB = 1024**3
LIMITS_GIB = {"deep1000_analyze": 1.0, "deep1000_prune": 1.5, "llama7b_meta_analyze": 2.0}
"""Stated limits: peak memory increase over the baseline, in GiB."""


class DeepMlp(nn.Module):
    """1,000 Linear layers (width 64) in 500 residual blocks of two."""

    def __init__(self, layers: int = 1000, width: int = 64) -> None:
        super().__init__()
        self.inp = nn.Linear(16, width)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width))
                                    for _ in range((layers - 2) // 2))
        self.out = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inp(x)
        for b in self.blocks:
            x = x + b(x)
        return self.out(x)


class RMSNorm(nn.Module):
    """Llama's RMSNorm."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class LlamaBlock(nn.Module):
    """Pre-norm attention (rotary, causal, GQA-capable) and SwiGLU MLP."""

    def __init__(self, d: int, heads: int, kv_heads: int, ffn: int) -> None:
        super().__init__()
        self.heads, self.kv, self.hd = heads, kv_heads, d // heads
        self.attn_norm, self.mlp_norm = RMSNorm(d), RMSNorm(d)
        self.q = nn.Linear(d, heads * self.hd, bias=False)
        self.k = nn.Linear(d, kv_heads * self.hd, bias=False)
        self.v = nn.Linear(d, kv_heads * self.hd, bias=False)
        self.o = nn.Linear(heads * self.hd, d, bias=False)
        self.gate = nn.Linear(d, ffn, bias=False)
        self.up = nn.Linear(d, ffn, bias=False)
        self.down = nn.Linear(ffn, d, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        h = self.attn_norm(x)
        q = self.q(h).view(b, t, self.heads, self.hd).transpose(1, 2)
        k = self.k(h).view(b, t, self.kv, self.hd).transpose(1, 2)
        v = self.v(h).view(b, t, self.kv, self.hd).transpose(1, 2)
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.kv != self.heads)
        x = x + self.o(y.transpose(1, 2).reshape(b, t, self.heads * self.hd))
        h = self.mlp_norm(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Llama(nn.Module):
    """A Llama-shaped decoder (7B: d=4096, 32 layers, 32 heads, ffn 11008, vocab 32000)."""

    def __init__(self, vocab: int = 32000, d: int = 4096, layers: int = 32, heads: int = 32,
                 kv_heads: int = 32, ffn: int = 11008) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.layers = nn.ModuleList(LlamaBlock(d, heads, kv_heads, ffn) for _ in range(layers))
        self.norm = RMSNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        hd = d // heads
        self.register_buffer("inv_freq", 1.0 / (10000 ** (torch.arange(0, hd, 2).float() / hd)),
                             persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        t = ids.shape[1]
        freqs = torch.outer(torch.arange(t, device=ids.device, dtype=torch.float32), self.inv_freq)
        emb = torch.cat([freqs, freqs], dim=-1)
        cos, sin = emb.cos(), emb.sin()
        x = self.embed(ids)
        for layer in self.layers:
            x = layer(x, cos, sin)
        return self.lm_head(self.norm(x))


def _peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def run_case(name: str) -> dict[str, object]:
    """Build the case's model, then measure prunec's step; returns the numbers as a dict."""
    import prunec

    torch.set_num_threads(2)
    if name.startswith("deep1000"):
        torch.manual_seed(0)
        model, x = DeepMlp().eval(), torch.randn(4, 16)
    else:
        with torch.device("meta"):
            model = Llama()
        x = torch.zeros(1, 16, dtype=torch.long, device="meta")
    params = sum(p.numel() for p in model.parameters())
    base = _peak()
    t0 = time.perf_counter()
    if name.endswith("prune"):
        result = prunec.prune(model, x, ratio=0.5)
        groups, extra = len(result.analysis.groups), result.report.params_after
    else:
        analysis = prunec.analyze(model, x)
        groups, extra = len(analysis.groups), analysis.coupling.atoms.total
    seconds = time.perf_counter() - t0
    return {"case": name, "params": params, "groups": groups, "extra": extra, "seconds": seconds,
            "baseline_gib": base / GIB, "peak_gib": _peak() / GIB, "increase_gib": (_peak() - base) / GIB}


def main(argv: list[str] | None = None) -> int:
    """Run every case in its own interpreter and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", choices=sorted(LIMITS_GIB))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(run_case(args.case)))
        return 0
    rows = []
    for name in [args.case] if args.case else list(LIMITS_GIB):
        proc = subprocess.run([sys.executable, __file__, "--case", name, "--child"], capture_output=True,
                              text=True, timeout=3600, cwd=Path(__file__).resolve().parents[1])
        if proc.returncode != 0:
            print(f"{name}: failed\n{proc.stderr[-3000:]}")
            return 1
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"{'case':22} {'params':>9} {'groups':>7} {'atoms/params after':>19} {'seconds':>8} "
          f"{'baseline GiB':>13} {'peak GiB':>9} {'increase GiB':>13} {'limit GiB':>10} {'ok':>4}")
    ok = True
    for r in rows:
        limit = LIMITS_GIB[str(r["case"])]
        passed = float(r["increase_gib"]) <= limit  # type: ignore[arg-type]
        ok &= passed
        print(f"{r['case']:22} {_human(r['params']):>9} {r['groups']:>7} {_human(r['extra']):>19} "
              f"{r['seconds']:>8.1f} {r['baseline_gib']:>13.2f} {r['peak_gib']:>9.2f} "
              f"{r['increase_gib']:>13.2f} {limit:>10.1f} {'yes' if passed else 'NO':>4}")
    return 0 if ok else 1


def _human(n: object) -> str:
    v = float(n)  # type: ignore[arg-type]
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(v) >= div:
            return f"{v / div:.2f}{unit}"
    return f"{v:.0f}"


if __name__ == "__main__":
    sys.exit(main())

