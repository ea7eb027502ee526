"""Entry point: parses the sub-command and turns every pcgraph error into one line + exit 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pcgraph.cli import check, draw, run
from pcgraph.errors import PCGraphError

__all__ = ["build_parser", "main"]

EXIT_INVALID = 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-parser per command."""
    parser = argparse.ArgumentParser(
        prog="pcgraph",
        description="Predictive coding networks on arbitrary graphs.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check.add_parser(sub)
    draw.add_parser(sub)
    run.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 invalid input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except PCGraphError as exc:
        print(f"pcgraph {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
