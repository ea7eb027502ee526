"""Graph specifications: the validated, immutable description of a predictive coding network."""

from __future__ import annotations

from pcgraph.schema.builders import chain, decoder, mlp, residual_mlp
from pcgraph.schema.io import spec_to_dict
from pcgraph.schema.spec import EdgeSpec, GraphSpec, NodeSpec

__all__ = [
    "EdgeSpec",
    "GraphSpec",
    "NodeSpec",
    "chain",
    "decoder",
    "mlp",
    "residual_mlp",
    "spec_to_dict",
]
