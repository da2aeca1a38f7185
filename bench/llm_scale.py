"""Analysis of Llama-7B-shaped decoders on the meta device: seconds and peak resident memory.

Hidden 4096, 32 query heads / 8 KV heads of 128, SwiGLU width 11008, vocab 32000; 2, 8 and 32
layers. The parameters live on the `meta` device (no memory for weights), so what is measured is
prunec's own cost: tracing with torch.export and the channel analysis. Each size runs in a fresh
subprocess so that peak RSS is per size.

    python bench/llm_scale.py            # 2, 8, 32 layers
    python bench/llm_scale.py --layers 2 8
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

SHAPE = {"vocab": 32000, "hidden": 4096, "heads": 32, "kv_heads": 8, "head_dim": 128, "intermediate": 11008}


def measure(layers: int, tokens: int) -> dict[str, float]:
    """Analyse one size in this process; return timings and peak RSS."""
    import torch
    from prunec.zoo.llama import Llama, LlamaConfig

    import prunec

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with torch.device("meta"):
        model = Llama(LlamaConfig(layers=layers, **SHAPE)).eval()
    ids = torch.zeros(1, tokens, dtype=torch.long, device="meta")
    start = time.perf_counter()
    analysis = prunec.analyze(model, ids)
    seconds = time.perf_counter() - start
    kinds = {k: sum(1 for g in analysis.groups if g.kind == k) for k in ("heads", "hidden", "mlp")}
    heads = next(g for g in analysis.groups if g.kind == "heads")
    return {
        "layers": layers, "params_b": sum(p.numel() for p in model.parameters()) / 1e9, "seconds": seconds,
        "rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2,
        "rss_before_gib": base / 1024,
        "atoms_m": analysis.coupling.atoms.total / 1e6, "ops": len(analysis.graph),
        "groups": len(analysis.groups), "head_channels": heads.channel_count,
        **{f"{k}_groups": v for k, v in kinds.items()},
    }


def main() -> None:
    """Run each size in a subprocess and print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, nargs="*", default=[2, 8, 32])
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args.one, args.tokens)))
        return
    rows = []
    for layers in args.layers:
        out = subprocess.run([sys.executable, __file__, "--one", str(layers), "--tokens", str(args.tokens)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"Llama-shaped decoder on meta tensors (hidden 4096, 32/8 heads of 128, MLP 11008, vocab 32000), "
          f"{args.tokens} tokens")
    print(f"{'layers':>6} {'params':>8} {'ops':>6} {'atoms':>8} {'groups':>7} {'heads/kv':>9} "
          f"{'seconds':>8} {'peak RSS':>9}")
    for r in rows:
        print(f"{r['layers']:>6} {r['params_b']:>7.2f}B {r['ops']:>6} {r['atoms_m']:>7.1f}M {r['groups']:>7} "
              f"{r['head_channels']:>9} {r['seconds']:>7.1f}s {r['rss_gib']:>7.2f}GiB")
    print("targets: 32 layers in < 60 s and < 4 GiB peak RSS; 'heads/kv' = channels of the first head "
          "group (one per KV head, each with its 4 query heads)")


if __name__ == "__main__":
    main()
