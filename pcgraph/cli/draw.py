"""``pcgraph draw FILE -o graph.png``: a picture of the graph under a clamp set."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pcgraph.analysis import resolve_clamp
from pcgraph.cli.command import add_topology_command
from pcgraph.cli.validate import check_output_file
from pcgraph.schema import GraphSpec

__all__ = ["add_parser", "run_draw"]


SUMMARY = "draw a topology to an image file"
DESCRIPTION = (
    "Draw FILE: nodes coloured by role, clamped nodes outlined, "
    "edges labelled by op, cycles in red; --clamp chooses the clamp set "
    "whose nodes are outlined."
)


def add_parser(sub: Any) -> None:
    """Register the ``draw`` sub-command."""
    p = add_topology_command(sub, "draw", run_draw, SUMMARY, DESCRIPTION)
    p.add_argument("-o", "--output", default=None, help="image path (default: FILE with .png)")
    p.add_argument("--clamp", default="train", help="train | predict | generate | a,b,c")


def run_draw(args: argparse.Namespace) -> int:
    """Execute ``pcgraph draw``."""
    from pcgraph.viz import draw_graph

    spec = GraphSpec.from_yaml(args.file)
    clamp = resolve_clamp(spec, args.clamp)
    out = args.output or str(args.file).rsplit(".", 1)[0] + ".png"
    check_output_file(Path(out), "--output")
    draw_graph(spec, clamp=sorted(clamp), path=out)
    print(f"wrote {out}")
    return 0
