"""pcgraph: predictive coding networks on arbitrary graphs, with the neuron initializations that
make them fast.

Pipeline: ``GraphSpec`` (YAML / NetworkX / builders) → ``analyze`` → ``compile`` → initializers →
``solve_inference`` / ``PCLearner`` → training and visualization.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pcgraph.analysis import (
    GraphAnalysis,
    analyze,
    check_forward_init,
    resolve_clamp,
    smm_per_update,
)
from pcgraph.energies import Energy, register_energy
from pcgraph.errors import (
    CheckpointError,
    ClampError,
    ConfigError,
    EnergyError,
    InitError,
    PCGraphError,
    SpecError,
)
from pcgraph.fast import fast_paths
from pcgraph.ops import register_op
from pcgraph.schema import EdgeSpec, GraphSpec, NodeSpec, chain, decoder, mlp, residual_mlp

__version__ = "0.1.0"

# The compiler, engine and initializers need torch; they are imported on first use of their names
# (PEP 562), so that ``import pcgraph`` and ``pcgraph check`` (schema + analysis) start without it.
_LAZY = {
    "BackpropTwin": "pcgraph.backprop",
    "PCNetwork": "pcgraph.compiler",
    "compile": "pcgraph.compiler",
    "InferenceResult": "pcgraph.engine",
    "PCLearner": "pcgraph.engine",
    "StepMetrics": "pcgraph.engine",
    "fuse_optimizer": "pcgraph.engine",
    "solve_inference": "pcgraph.engine",
    "update_params": "pcgraph.engine",
    "INITIALIZERS": "pcgraph.init",
    "Initializer": "pcgraph.init",
    "make_initializer": "pcgraph.init",
    "Solver": "pcgraph.solvers",
    "register_solver": "pcgraph.solvers",
}

if TYPE_CHECKING:
    from pcgraph.backprop import BackpropTwin
    from pcgraph.compiler import PCNetwork, compile
    from pcgraph.engine import (
        InferenceResult,
        PCLearner,
        StepMetrics,
        fuse_optimizer,
        solve_inference,
        update_params,
    )
    from pcgraph.init import INITIALIZERS, Initializer, make_initializer
    from pcgraph.solvers import Solver, register_solver


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pcgraph' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "INITIALIZERS",
    "BackpropTwin",
    "CheckpointError",
    "ClampError",
    "ConfigError",
    "EdgeSpec",
    "Energy",
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
    "Solver",
    "SpecError",
    "StepMetrics",
    "__version__",
    "analyze",
    "chain",
    "check_forward_init",
    "compile",
    "decoder",
    "fast_paths",
    "fuse_optimizer",
    "make_initializer",
    "mlp",
    "register_energy",
    "register_op",
    "register_solver",
    "residual_mlp",
    "resolve_clamp",
    "smm_per_update",
    "solve_inference",
    "update_params",
]
