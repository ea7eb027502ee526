"""Entry point: imports the ``--plugin`` modules, parses the sub-command and turns every pcgraph
error into one line + exit 2."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence

from pcgraph import fast
from pcgraph.cli import check, draw, evaluate, plugins, train
from pcgraph.errors import PCGraphError

__all__ = ["build_parser", "main"]

EXIT_INVALID = 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-parser per command."""
    parser = argparse.ArgumentParser(
        prog="pcgraph",
        description="Predictive coding networks on arbitrary graphs.",
    )
    parser.add_argument(
        "--debug", action="store_true", help="on an error, print the full chain of causes"
    )
    parser.add_argument(plugins.FLAG, action="append", metavar="MODULE", help=plugins.HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check.add_parser(sub)
    draw.add_parser(sub)
    train.add_parser(sub)
    evaluate.add_parsers(sub)
    for command in sub.choices.values():  # (main takes them out of argv wherever they stand)
        command.add_argument(plugins.FLAG, action="append", metavar="MODULE", help=plugins.HELP)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 invalid input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere, not only before the command
    argv = [a for a in argv if a != "--debug"]
    try:  # before the parser, so that its help lists what the plugins register
        fast.check_environment()  # an unknown PCGRAPH_FAST value
        names, argv = plugins.split_plugins(argv)
        plugins.load_plugins(names)
    except PCGraphError as exc:
        if debug:
            traceback.print_exc()
        print(f"pcgraph: error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    parser = build_parser()
    args = parser.parse_args(argv)
    args.debug, args.plugin = debug, names
    try:
        return int(args.handler(args))
    except PCGraphError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"pcgraph {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except BrokenPipeError:
        # the reader went away (`pcgraph check --json | head -1`): not an error of ours; point
        # stdout at /dev/null so that the interpreter's final flush does not complain either
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug of pcgraph, not bad input: say so in one line
        if args.debug:
            traceback.print_exc()
        print(
            f"pcgraph {args.command}: internal error: {type(exc).__name__}: {exc} "
            "(rerun with --debug for the traceback, and please report it)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
