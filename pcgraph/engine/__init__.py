"""The engine: inference, learning, and the train step."""

from __future__ import annotations

from pcgraph.engine.inference import InferenceResult, solve_inference
from pcgraph.engine.learning import PCLearner, StepMetrics, fuse_optimizer, update_params

__all__ = [
    "InferenceResult",
    "PCLearner",
    "StepMetrics",
    "fuse_optimizer",
    "solve_inference",
    "update_params",
]
