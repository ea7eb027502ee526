"""The compiler: GraphSpec → PCNetwork (parameters, flat state layout, execution plans)."""

from __future__ import annotations

from pcgraph.compiler.backends import BACKENDS, compile, program_for
from pcgraph.compiler.network import EdgeInfo, NodeInfo, PCNetwork
from pcgraph.compiler.program import InferenceProgram
from pcgraph.compiler.protocol import Buffers, Program

__all__ = [
    "BACKENDS",
    "Buffers",
    "EdgeInfo",
    "InferenceProgram",
    "NodeInfo",
    "PCNetwork",
    "Program",
    "compile",
    "program_for",
]
