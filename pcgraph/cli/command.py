"""One way to register a sub-command of ``pcgraph`` that reads a topology file."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

__all__ = ["add_topology_command"]

Handler = Callable[[argparse.Namespace], int]


def add_topology_command(
    sub: Any,
    name: str,
    handler: Handler,
    summary: str,
    description: str,
    file_help: str = "a topology YAML file",
) -> argparse.ArgumentParser:
    """Add ``pcgraph NAME FILE …`` with its help texts and handler; returns the parser, to
    which the caller adds the command's own options."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=summary, description=description)
    parser.add_argument("file", help=file_help)
    parser.set_defaults(handler=handler)
    return parser
