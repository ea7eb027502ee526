"""The compiler: GraphSpec → PCNetwork (parameters, flat state layout, execution plans)."""

from __future__ import annotations

from pcgraph.compiler.network import EdgeInfo, NodeInfo, PCNetwork, compile
from pcgraph.compiler.program import InferenceProgram, program_for

__all__ = ["EdgeInfo", "InferenceProgram", "NodeInfo", "PCNetwork", "compile", "program_for"]
