"""The `prunec` command line: prune or inspect an ONNX file or a torch model built by a factory."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prunec.analysis.result import Analysis

EXIT_OK, EXIT_BAD_INPUT, EXIT_VERIFY = 0, 2, 3

DESCRIPTION = """\
prunec removes whole channels (conv filters, linear rows, attention heads, MLP width) from a
trained model and writes a structurally smaller model that computes exactly what the original
computes with those channels set to zero. Every result is verified before it is written.

A MODEL is a path to an .onnx file, `pkg.module:factory` naming a Python function that returns a
torch.nn.Module (or a tuple (module, example_inputs)), or the name of a bundled zoo model.
"""

EPILOG = """\
examples:
  prunec inspect model.onnx                                 what can be pruned, and what not (why)
  prunec prune model.onnx -o small.onnx --target macs=0.5   keep at most half of the MACs
  prunec prune model.onnx -o small.onnx --target ratio=0.3 --round-to 8 --report report.md --plot
  prunec prune model.onnx -o small.onnx --target params=0.6 --ignore "/classifier/*"
  prunec prune mypkg.models:build_resnet -o small.pt --target macs=0.5 --input-shape 1,3,224,224

exit codes: 0 ok, 2 bad input (unreadable model, impossible target, bad flag), 3 verification failed.
Nothing is written unless the pruned model passed verification.
"""


# -- arguments ---------------------------------------------------------------------------------

def parse_shape(text: str) -> tuple[str | None, tuple[int, ...]]:
    """'x=1,3,224,224' -> ('x', (1, 3, 224, 224)); '1,3,224,224' -> (None, ...)."""
    from prunec.errors import InputError

    name, eq, dims = text.rpartition("=")
    try:
        shape = tuple(int(d) for d in (dims if eq else text).split(",") if d.strip())
    except ValueError:
        raise InputError(f"--input-shape {text!r}: expected comma-separated integers such as 1,3,224,224 "
                         "(optionally NAME=1,3,224,224)") from None
    if not shape or any(d < 1 for d in shape):
        raise InputError(f"--input-shape {text!r}: every dimension must be a positive integer")
    return (name if eq else None), shape


def is_onnx_path(spec: str) -> bool:
    """A MODEL argument naming an ONNX file (rather than a factory or a zoo model)."""
    if spec.lower().endswith(".onnx") or os.path.isfile(spec):
        return True
    from prunec.zoo import ZOO

    return ":" not in spec and spec not in ZOO and os.path.exists(spec)


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL",
                   help="an .onnx file, pkg.module:factory for a torch model, or a zoo model name")
    p.add_argument("--input-shape", action="append", default=[], metavar="[NAME=]D0,D1,...",
                   help="concrete input shape; repeat for several inputs. ONNX: needed for symbolic dims "
                        "other than the batch (e.g. x=1,128). torch factories: the shape of a random "
                        "example input (needed unless the factory returns inputs)")
    p.add_argument("--batch", type=int, default=1, help="ONNX: size of a symbolic batch axis (default 1)")
    p.add_argument("--ignore", nargs="+", default=[], metavar="NODE",
                   help="keep the output channels of these nodes: ONNX node names, globs such as '/fc/*', "
                        "or initializer names; torch: module names")
    p.add_argument("--strict", action="store_true",
                   help="fail (exit 2) on nodes that have no channel rule instead of leaving them unpruned")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `prunec` command."""
    parser = argparse.ArgumentParser(prog="prunec", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    prune = sub.add_parser("prune", help="prune a model and write the smaller one",
                           description="Prune MODEL, verify the result, and write it to OUTPUT.",
                           epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_model_options(prune)
    prune.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                       help="where to write the pruned model (.onnx for ONNX input, e.g. .pt for torch)")
    prune.add_argument("--target", required=True, metavar="KIND=VALUE",
                       help="macs=0.5 or params=0.5 (keep at most that share), or ratio=0.3 (remove 30%% "
                            "of every prunable group's channels)")
    prune.add_argument("--criterion", default="l2", help="channel importance: l2 (default) or l1")
    prune.add_argument("--round-to", type=int, default=None, metavar="N",
                       help="keep channel counts multiples of N (e.g. 8 for fast kernels)")
    prune.add_argument("--report", metavar="FILE.md|FILE.json", help="also write a report (Markdown or JSON)")
    prune.add_argument("--plot", nargs="?", const="", default=None, metavar="FILE.png",
                       help="also draw channels per layer before/after (PNG; default: next to the report "
                            "or the output)")
    prune.add_argument("-q", "--quiet", action="store_true", help="no progress bars, no summary")
    prune.set_defaults(func=_prune)

    inspect = sub.add_parser("inspect", help="show groups, pinned nodes and the prunable share",
                             description="Analyse MODEL and print what can be pruned, and why the rest cannot.")
    _add_model_options(inspect)
    inspect.add_argument("--all", action="store_true", help="list every group and pin (default: the first 40)")
    add_explain_options(inspect)
    inspect.set_defaults(func=_inspect)
    _add_plugins_command(sub)

    demo = sub.add_parser("demo", help="prune a bundled zoo model and print the report")
    demo.add_argument("--model", default="resnet_basic", help="zoo model name (default: resnet_basic)")
    demo.add_argument("--ratio", type=float, default=0.5, help="fraction of channels to remove (default 0.5)")
    demo.add_argument("--round-to", type=int, default=None, help="keep channel counts multiples of N")
    demo.set_defaults(func=_demo)
    return parser


# -- loading models ----------------------------------------------------------------------------

def load_torch_model(spec: str, shapes: Sequence[str]) -> tuple[Any, Any]:
    """A zoo model by name, or `pkg.module:factory`; return (module, example inputs)."""
    import torch

    from prunec.errors import InputError
    from prunec.zoo import ZOO

    if spec in ZOO:
        return ZOO[spec].build(), ZOO[spec].example_inputs()
    module_name, colon, attr = spec.partition(":")
    if not colon:
        raise InputError(f"unknown model {spec!r}: give a zoo name ({', '.join(sorted(ZOO)[:5])}, ...) or "
                         "'package.module:factory' with --input-shape 1,3,32,32, or the path of an .onnx file")
    shape_text = " ".join(shapes)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        factory = getattr(importlib.import_module(module_name), attr)
        parsed = [parse_shape(s)[1] for s in shapes]
    except (ImportError, AttributeError, InputError) as exc:
        raise InputError(f"cannot load {spec!r} with input shape {shape_text!r}: {exc}") from exc
    if not callable(factory):
        raise InputError(f"{spec!r} is a {type(factory).__name__}, not a function or class that builds a model")
    built = factory()
    model, inputs = (built if isinstance(built, tuple) and len(built) == 2 else (built, None))
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"{spec} returned {type(model).__name__}; it must return a torch.nn.Module or a "
                         "tuple (module, example_inputs)")
    if inputs is None:
        if not parsed:
            raise InputError(f"model {spec!r} needs --input-shape, e.g. --input-shape 1,3,32,32 (once per model "
                             "input), unless the factory returns (module, example_inputs)")
        gen = torch.Generator().manual_seed(0)
        tensors = [torch.randn(shape, generator=gen) for shape in parsed]
        inputs = tensors[0] if len(tensors) == 1 else tuple(tensors)
    return model.eval(), inputs


def onnx_shapes(model_path: str, shapes: Sequence[str]) -> dict[str, tuple[int, ...]] | None:
    """--input-shape values for an ONNX model, by input name (a lone unnamed shape means the only input)."""
    from prunec.errors import InputError
    from prunec.frontends.onnx_graph import load_model

    if not shapes:
        return None
    out: dict[str, tuple[int, ...]] = {}
    for text in shapes:
        name, shape = parse_shape(text)
        if name is None:
            proto, _ = load_model(model_path)
            inits = {t.name for t in proto.graph.initializer}
            names = [vi.name for vi in proto.graph.input if vi.name not in inits]
            if len(names) != 1 or len(shapes) != 1:
                raise InputError(f"--input-shape {text!r} has no input name and the model has inputs "
                                 f"{', '.join(repr(n) for n in names)}; write NAME=D0,D1,...")
            name = names[0]
        out[name] = shape
    return out


# -- progress and output files -----------------------------------------------------------------

class Progress:
    """A tqdm bar over the named steps of one run (silent with --quiet)."""

    def __init__(self, steps: Sequence[str], quiet: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=len(steps), desc="prunec", unit="step", file=sys.stderr, disable=quiet,
                        leave=False, bar_format="{desc:<18} {bar:24} {n_fmt}/{total_fmt} [{elapsed}]")
        self.started = False

    def __call__(self, name: str) -> None:
        """Mark the previous step done and show `name` as running."""
        if self.started:
            self.bar.update(1)
        self.started = True
        self.bar.set_description(f"prunec: {name}")

    def close(self) -> None:
        """Finish the bar."""
        if self.started:
            self.bar.update(1)
        self.bar.close()


def _check_outputs(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """Validate output paths before any work; return (report path, plot path)."""
    from prunec.cli_report import REPORT_SUFFIXES
    from prunec.errors import InputError

    for path in [args.output, args.report, args.plot or None]:
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise InputError(f"cannot write {path!r}: its directory does not exist")
    if os.path.abspath(args.output) == os.path.abspath(args.model):
        raise InputError("the output would overwrite the input model; choose another -o path")
    if args.report and not args.report.lower().endswith(REPORT_SUFFIXES):
        raise InputError(f"--report {args.report!r}: use a .md (Markdown) or .json file name")
    plot = None
    if args.plot is not None:
        plot = args.plot or os.path.splitext(args.report or args.output)[0] + "_channels.png"
        if not plot.lower().endswith(".png"):
            raise InputError(f"--plot {plot!r}: use a .png file name")
    return args.report, plot


def _staged(path: str) -> str:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".prunec-",
                               suffix=os.path.splitext(path)[1])
    os.close(fd)
    return tmp


def _publish(tmp: str, final: str) -> None:
    """Give a staged file the usual permissions (mkstemp makes it private) and move it in place."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, final)


def _write_outputs(save_model: Callable[[str], None], args: argparse.Namespace, result: Any,
                   report_path: str | None, plot_path: str | None) -> None:
    """Render report and plot to temporary files, save the model, then move them in place; on any
    failure no output is left behind.
    """
    from prunec.cli_report import plot_channels, to_json, to_markdown

    report, removed = result.report, result.removed
    weights = [v.param for v in result.analysis.graph.state_values() if v.rank >= 2 and v.param]
    staged: list[tuple[str, str]] = []
    try:
        if plot_path:
            tmp = _staged(plot_path)
            staged.append((tmp, plot_path))
            plot_channels(report, tmp, weights)
        if report_path:
            tmp = _staged(report_path)
            staged.append((tmp, report_path))
            text = (to_json(report, removed, args.model, args.output) if report_path.lower().endswith(".json")
                    else to_markdown(report, args.model, args.output, plot_path))
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
        save_model(args.output)
        for tmp, final in staged:
            _publish(tmp, final)
        staged.clear()
    finally:
        for tmp, _ in staged:
            if os.path.exists(tmp):
                os.remove(tmp)


# -- commands ----------------------------------------------------------------------------------

def _prune(args: argparse.Namespace) -> int:
    import prunec
    from prunec.targets import Target

    report_path, plot_path = _check_outputs(args)
    target = Target.parse(args.target)
    kw: dict[str, Any] = {"criterion": args.criterion, "ignore": args.ignore, "round_to": args.round_to,
                          "strict": args.strict}
    kw.update({"ratio": target.value} if target.kind == "ratio" else {"target": target})
    if is_onnx_path(args.model):
        from prunec import onnx_api

        progress = Progress(["analyse", "score", "select", "rewrite", "verify", "save"], args.quiet)
        try:
            result: Any = onnx_api.prune(args.model, input_shapes=onnx_shapes(args.model, args.input_shape),
                                         batch=args.batch, progress=progress, **kw)
            progress("save")
            _write_outputs(result.save, args, result, report_path, plot_path)
        finally:
            progress.close()
    else:
        import torch

        progress = Progress(["build", "prune and verify", "save"], args.quiet)
        try:
            progress("build")
            model, inputs = load_torch_model(args.model, args.input_shape)
            progress("prune and verify")
            result = prunec.prune(model, inputs, **kw)

            def save(path: str) -> None:
                tmp = _staged(path)
                try:
                    torch.save(result.model, tmp)
                    _publish(tmp, path)
                finally:
                    if os.path.exists(tmp):
                        os.remove(tmp)
            progress("save")
            _write_outputs(save, args, result, report_path, plot_path)
        finally:
            progress.close()
    if not args.quiet:
        print(result.report)
        written = [args.output] + [p for p in (report_path, plot_path) if p]
        print(f"wrote {', '.join(written)}")
    return EXIT_OK


def _inspect(args: argparse.Namespace) -> int:
    import prunec
    from prunec.analysis.cost import graph_macs, graph_params

    if is_onnx_path(args.model):
        from prunec import onnx_api

        analysis = onnx_api.analyze(args.model, input_shapes=onnx_shapes(args.model, args.input_shape),
                                    batch=args.batch, ignore=args.ignore, strict=args.strict)
    else:
        model, inputs = load_torch_model(args.model, args.input_shape)
        analysis = prunec.analyze(model, inputs, ignore=args.ignore, strict=args.strict)
    if args.explain or args.dot or args.draw:
        run_explain_options(args, analysis)
        return EXIT_OK
    graph = analysis.graph
    everything = analysis.keep_mask({g.id: range(g.channel_count) for g in analysis.groups})
    shapes = analysis.new_shapes(everything)
    params, macs = graph_params(graph), graph_macs(graph)
    p_share = 1 - graph_params(graph, shapes) / params if params else 0.0
    m_share = 1 - graph_macs(graph, shapes) / macs if macs else 0.0
    limit = None if args.all else 40
    print(f"model: {args.model} ({len(graph)} ops, {params:,} parameters, {macs:,} MACs)")
    print(f"prunable share: {p_share:.1%} of parameters, {m_share:.1%} of MACs depend on prunable channels")
    print(f"groups ({len(analysis.groups)}, {analysis.prunable_channels} channels):")
    print(f"  {'id':>4}  {'channels':>8}  {'zero-inv.':>9}  {'members':>7}  name")
    for g in analysis.groups[:limit]:
        print(f"  {g.id:>4}  {g.channel_count:>8}  {'yes' if g.zero_invariant else 'no':>9}  {len(g.members):>7}  "
              f"{g.name}")
    _more(len(analysis.groups), limit, "groups")
    print(f"pinned nodes ({len(analysis.pinned)}):")
    for p in analysis.pinned[:limit]:
        print(f"  {p}")
    _more(len(analysis.pinned), limit, "pinned nodes")
    reasons: dict[str, int] = {}
    for pp in analysis.pinned_params:
        reasons[pp.reason] = reasons.get(pp.reason, 0) + 1
    print(f"unprunable parameter axes ({len(analysis.pinned_params)}), by reason:")
    for reason, n in sorted(reasons.items(), key=lambda r: -r[1])[:limit]:
        print(f"  {n:4d} x {reason}")
    return EXIT_OK


def _more(total: int, limit: int | None, what: str) -> None:
    if limit is not None and total > limit:
        print(f"  ... {total - limit} more {what} (--all lists them)")


def _plugins(args: argparse.Namespace) -> int:
    from prunec.plugins import extensions, format_extensions, load_plugins

    kinds = [args.kind] if args.kind else ["rule", "pass", "criterion"]
    rows = extensions(kinds)
    if args.no_builtin:
        rows = [r for r in rows if not r.origin.startswith("built-in ")]
    print(format_extensions(rows, load_plugins()))
    return EXIT_OK


def _add_plugins_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("plugins", help="list op rules, passes and criteria, and where each came from")
    p.add_argument("--kind", choices=["rule", "pass", "criterion"], help="list only this kind")
    p.add_argument("--no-builtin", action="store_true", help="hide prunec's own rules, passes and criteria")
    p.set_defaults(func=_plugins)


def add_explain_options(parser: argparse.ArgumentParser) -> None:
    """The introspection options of `prunec inspect` (--explain, --dot, --draw)."""
    parser.add_argument("--explain", action="append", default=[], metavar="NODE_OR_PARAM",
                        help="say which rules coupled its channels and why any are pinned (repeatable)")
    parser.add_argument("--dot", metavar="PATH", help="write a Graphviz picture of the groups")
    parser.add_argument("--draw", metavar="PATH", help="draw the groups with matplotlib (.png, .svg)")


def run_explain_options(args: argparse.Namespace, analysis: Analysis) -> None:
    """Act on --explain/--dot/--draw for an Analysis (the hook `prunec inspect` calls)."""
    from prunec.ir.draw import draw, to_dot

    for name in getattr(args, "explain", None) or []:
        print(analysis.explain(name))
    if getattr(args, "dot", None):
        with open(args.dot, "w", encoding="utf-8") as f:
            f.write(to_dot(analysis))
        print(f"wrote {args.dot}")
    if getattr(args, "draw", None):
        draw(analysis, args.draw)
        print(f"wrote {args.draw}")


def _demo(args: argparse.Namespace) -> int:
    import prunec
    from prunec.zoo import ZOO

    if args.model not in ZOO:
        print(f"unknown zoo model {args.model!r}; choose from: {', '.join(sorted(ZOO))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    entry = ZOO[args.model]
    model = entry.build()
    print(f"pruning zoo model '{entry.name}' ({entry.build.__doc__ or entry.family}) at ratio {args.ratio}")
    result = prunec.prune(model, entry.example_inputs(), ratio=args.ratio, round_to=args.round_to)
    print(result.report)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `prunec` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        import prunec

        print(prunec.__version__)
        return EXIT_OK
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    from prunec.errors import PruneError, VerificationError

    try:
        return int(args.func(args))
    except VerificationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_VERIFY
    except PruneError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
