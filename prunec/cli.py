"""The `prunec` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prunec.analysis.result import Analysis

EXIT_OK, EXIT_BAD_INPUT, EXIT_VERIFY = 0, 2, 3


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


def _load_model(spec: str, input_shape: str | None) -> tuple[object, object]:
    """A zoo model name, or 'package.module:factory' with --input-shape."""
    import importlib

    import torch

    from prunec.errors import InputError
    from prunec.zoo import ZOO

    if spec in ZOO:
        entry = ZOO[spec]
        return entry.build(), entry.example_inputs()
    module, colon, attr = spec.partition(":")
    if not colon:
        raise InputError(f"unknown model {spec!r}: give a zoo name ({', '.join(sorted(ZOO)[:5])}, ...) "
                         "or 'package.module:factory' with --input-shape 1,3,32,32")
    if not input_shape:
        raise InputError(f"model {spec!r} needs --input-shape, e.g. --input-shape 1,3,32,32")
    try:
        factory = getattr(importlib.import_module(module), attr)
        shape = tuple(int(s) for s in input_shape.split(","))
    except (ImportError, AttributeError, ValueError) as exc:
        raise InputError(f"cannot load {spec!r} with input shape {input_shape!r}: {exc}") from exc
    return factory(), torch.randn(*shape)


def _inspect(args: argparse.Namespace) -> int:
    import prunec

    model, inputs = _load_model(args.model, args.input_shape)
    analysis = prunec.analyze(model, inputs, strict=args.strict)  # type: ignore[arg-type]
    if not (args.explain or args.dot or args.draw):
        print(analysis)
    run_explain_options(args, analysis)
    return EXIT_OK


def _add_inspect_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("inspect", help="print a model's groups and pins (nothing is changed)")
    p.add_argument("model", help="zoo model name, or 'package.module:factory'")
    p.add_argument("--input-shape", help="example input shape for a factory model, e.g. 1,3,32,32")
    p.add_argument("--strict", action="store_true", help="fail on ops without a rule instead of pinning")
    add_explain_options(p)
    p.set_defaults(func=_inspect)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (subcommands register themselves here)."""
    parser = argparse.ArgumentParser(prog="prunec", description="Structured-pruning compiler for PyTorch and ONNX.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="prune a bundled zoo model and print the report")
    demo.add_argument("--model", default="resnet_basic", help="zoo model name (default: resnet_basic)")
    demo.add_argument("--ratio", type=float, default=0.5, help="fraction of channels to remove (default 0.5)")
    demo.add_argument("--round-to", type=int, default=None, help="keep channel counts multiples of N")
    demo.set_defaults(func=_demo)
    _add_plugins_command(sub)
    _add_inspect_command(sub)
    return parser


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
    from prunec.errors import InputError, PruneError, TargetError, VerificationError

    try:
        return int(args.func(args))
    except VerificationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_VERIFY
    except (InputError, TargetError, PruneError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
