"""The ``pcgraph`` command line: ``pcgraph check|draw|train|evaluate|reconstruct|flow``."""

from __future__ import annotations

from pcgraph.cli.main import main

__all__ = ["main"]
