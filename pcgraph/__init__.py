"""pcgraph: predictive coding networks on arbitrary graphs, with the neuron initializations that
make them fast.

Pipeline: ``GraphSpec`` (YAML / NetworkX / builders) → ``analyze`` → ``compile`` → initializers →
``solve_inference`` / ``PCLearner`` → training and visualization.
"""

from __future__ import annotations

from pcgraph.analysis import (
    GraphAnalysis,
    analyze,
    check_forward_init,
    resolve_clamp,
    smm_per_update,
)
from pcgraph.compiler import PCNetwork, compile
from pcgraph.engine import (
    InferenceResult,
    PCLearner,
    StepMetrics,
    fuse_optimizer,
    solve_inference,
    update_params,
)
from pcgraph.errors import (
    CheckpointError,
    ClampError,
    ConfigError,
    EnergyError,
    InitError,
    PCGraphError,
    SpecError,
)
from pcgraph.init import INITIALIZERS, Initializer, make_initializer
from pcgraph.schema import EdgeSpec, GraphSpec, NodeSpec, chain, decoder, mlp

__version__ = "0.1.0"

__all__ = [
    "INITIALIZERS",
    "CheckpointError",
    "ClampError",
    "ConfigError",
    "EdgeSpec",
    "EnergyError",
    "GraphAnalysis",
    "GraphSpec",
    "InferenceResult",
    "InitError",
    "Initializer",
    "NodeSpec",
    "PCGraphError",
    "PCLearner",
    "PCNetwork",
    "SpecError",
    "StepMetrics",
    "__version__",
    "analyze",
    "chain",
    "check_forward_init",
    "compile",
    "decoder",
    "fuse_optimizer",
    "make_initializer",
    "mlp",
    "resolve_clamp",
    "smm_per_update",
    "solve_inference",
    "update_params",
]
