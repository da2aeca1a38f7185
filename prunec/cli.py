"""The `prunec` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

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
