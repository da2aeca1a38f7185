"""ONNX Runtime (CPU) latency of original vs pruned models, measured side by side in one run.

Each model is exported from torch (TorchScript exporter, random weights), pruned through the ONNX
path (`prunec.prune(path, target=...)`, verified in onnxruntime), and both files are timed in
interleaved rounds on the same session settings. Run:

    python bench/onnx_latency.py                 # all models, --target macs=0.5
    python bench/onnx_latency.py --models resnet50 --target ratio=0.5 --threads 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch

import prunec
from prunec.onnx_api import count_params


def _tv(name: str) -> Callable[[], torch.nn.Module]:
    def build() -> torch.nn.Module:
        import torchvision

        return getattr(torchvision.models, name)(weights=None)
    return build


def _resnet(block: str, layers: tuple[int, ...], widths: tuple[int, ...], **kw: object) -> Callable[[], torch.nn.Module]:
    def build() -> torch.nn.Module:
        from prunec.zoo import resnet

        return resnet.ResNet(getattr(resnet, block), layers, widths=widths, **kw)
    return build


def _plain(module: str, cls: str, **kw: object) -> Callable[[], torch.nn.Module]:
    def build() -> torch.nn.Module:
        import importlib

        return getattr(importlib.import_module(f"prunec.zoo.{module}"), cls)(**kw)
    return build


IMG = (1, 3, 224, 224)
# name -> (builder, input shape, input dtype); zoo models at bigger widths/inputs than in the tests
MODELS: dict[str, tuple[Callable[[], torch.nn.Module], tuple[int, ...], torch.dtype]] = {
    "resnet18": (_tv("resnet18"), IMG, torch.float32),
    "resnet50": (_tv("resnet50"), IMG, torch.float32),
    "mobilenet_v2": (_tv("mobilenet_v2"), IMG, torch.float32),
    "vgg11_bn": (_tv("vgg11_bn"), IMG, torch.float32),
    "resnet_basic (zoo)": (_resnet("BasicBlock", (2, 2, 2), (64, 128, 256)), (1, 3, 128, 128), torch.float32),
    "resnet_bottleneck (zoo)": (_resnet("Bottleneck", (2, 2, 2), (32, 64, 128)), (1, 3, 128, 128), torch.float32),
    "resnext (zoo)": (_resnet("Bottleneck", (2, 2, 2), (32, 64, 128), groups=8, width_per_group=8),
                      (1, 3, 128, 128), torch.float32),
    "se_resnet (zoo)": (_resnet("BasicBlock", (2, 2, 2), (64, 128, 256), se=True), (1, 3, 128, 128), torch.float32),
    "digits_resnet (zoo)": (_plain("digits_net", "DigitsResNet", widths=(64, 128, 256)), (1, 1, 64, 64),
                            torch.float32),
    "convnext (zoo)": (_plain("convnext", "ConvNeXt", dims=(64, 128, 256), depths=(2, 2, 2)), IMG, torch.float32),
    "densenet (zoo)": (_plain("densenet", "DenseNet", growth=32, blocks=(4, 4)), (1, 3, 128, 128), torch.float32),
    "ghostnet (zoo)": (_plain("ghostnet", "GhostNet"), IMG, torch.float32),
    "inception (zoo)": (_plain("inception", "InceptionNet"), IMG, torch.float32),
    "mobilenet_v2 (zoo)": (_plain("mobilenet", "MobileNetV2"), IMG, torch.float32),
    "regnet (zoo)": (_plain("regnet", "RegNet", widths=(64, 128, 256), depths=(2, 3, 2), group_width=16), IMG,
                     torch.float32),
    "repvgg (zoo)": (_plain("repvgg", "RepVGG"), IMG, torch.float32),
    "shufflenet_v2 (zoo)": (_plain("shufflenet", "ShuffleNetV2", widths=(24, 116, 232, 464), repeats=(4, 8, 4)),
                            IMG, torch.float32),
    "unet (zoo)": (_plain("unet", "UNet", base=32), (1, 3, 256, 256), torch.float32),
    "vgg_bn (zoo)": (_plain("vgg", "VGG", widths=(64, "M", 128, "M", 256, 256, "M")), (1, 3, 32, 32), torch.float32),
    "char_gpt (zoo)": (_plain("char_gpt", "CharGPT", dim=256, heads=8, layers=4, block=256), (1, 256), torch.int64),
}


def export(name: str, directory: str) -> tuple[str, dict[str, np.ndarray]]:
    """Export with random (seeded, norm stats randomized) weights; return the path and one input."""
    from prunec.zoo import randomize_norms

    build, shape, dtype = MODELS[name]
    torch.manual_seed(0)
    model = build().eval()
    randomize_norms(model)
    x = torch.randint(0, 96, shape) if dtype == torch.int64 else torch.randn(shape)
    path = os.path.join(directory, name.replace(" ", "_").strip("()") + ".onnx")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), path, dynamo=False, input_names=["x"], output_names=["y"], opset_version=17)
    return path, {"x": x.numpy()}


def session(path: str, threads: int) -> object:
    """A CPU session with full graph optimizations."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def time_pair(a: object, b: object, feeds: dict[str, np.ndarray], rounds: int, per_round: int
              ) -> tuple[float, float]:
    """Median per-call latency (ms) of two sessions, alternating rounds so drift hits both alike."""
    for s in (a, b):
        for _ in range(3):
            s.run(None, feeds)  # type: ignore[attr-defined]
    ta: list[float] = []
    tb: list[float] = []
    for _ in range(rounds):
        for s, out in ((a, ta), (b, tb)):
            t0 = time.perf_counter()
            for _ in range(per_round):
                s.run(None, feeds)  # type: ignore[attr-defined]
            out.append((time.perf_counter() - t0) / per_round * 1e3)
    return statistics.median(ta), statistics.median(tb)


def main(argv: list[str] | None = None) -> int:
    """Print one row per model: sizes before/after and latency ratio pruned/original."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS), metavar="NAME")
    p.add_argument("--target", default="macs=0.5", help="pruning target (default macs=0.5)")
    p.add_argument("--round-to", type=int, default=8)
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (default 1)")
    p.add_argument("--rounds", type=int, default=15)
    args = p.parse_args(argv)
    kind, _, value = args.target.partition("=")
    print(f"onnxruntime CPU latency, target {args.target}, round_to {args.round_to}, {args.threads} thread(s), "
          f"median of {args.rounds} interleaved rounds; ratio = pruned / original")
    header = (f"{'model':<24}{'input':>16}{'params':>18}{'MACs kept':>11}{'orig ms':>10}{'pruned ms':>11}"
              f"{'ratio':>8}{'speedup':>9}")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as d:
        for name in args.models:
            path, feeds = export(name, d)
            kw = {"ratio": float(value)} if kind == "ratio" else {"target": args.target}
            result = prunec.prune(path, round_to=args.round_to, **kw)
            small = os.path.join(d, "small_" + os.path.basename(path))
            result.save(small)
            full, pruned = session(path, args.threads), session(small, args.threads)
            per_round = max(1, int(0.25 / max(1e-4, _once(full, feeds))))
            t_full, t_small = time_pair(full, pruned, feeds, args.rounds, per_round)
            before, after = result.report.params_before, count_params(result.model)
            shape = "x".join(str(s) for s in feeds["x"].shape)
            sizes = f"{_human(before)} -> {_human(after)}"
            print(f"{name:<24}{shape:>16}{sizes:>18}{result.report.macs_ratio:>11.1%}"
                  f"{t_full:>10.2f}{t_small:>11.2f}{t_small / t_full:>8.2f}{t_full / t_small:>8.2f}x", flush=True)
    return 0


def _human(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}K"


def _once(s: object, feeds: dict[str, np.ndarray]) -> float:
    t0 = time.perf_counter()
    s.run(None, feeds)  # type: ignore[attr-defined]
    return time.perf_counter() - t0


if __name__ == "__main__":
    sys.exit(main())
