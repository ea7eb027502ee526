"""The incremental schedule (iPC): a weight update after every inference step
(:func:`incremental_step`, what ``PCLearner(schedule="incremental")`` runs per batch)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch

from pcgraph.engine.inference import InferenceResult

if TYPE_CHECKING:
    from pcgraph.engine.learning import PCLearner

__all__ = ["incremental_step"]


def incremental_step(
    learner: PCLearner,
    data: Mapping[str, torch.Tensor],
    *,
    labels: torch.Tensor | None,
    trace: bool,
) -> InferenceResult:
    """iPC: init, then up to T times (one inference step, one weight update at its errors);
    with ``tol``, the steps stop once the energy change of one is at most tol · E."""
    x, sweep = learner._initialized(data, learner.clamp, train=True, labels=labels)
    first: InferenceResult | None = None
    result: InferenceResult | None = None
    traces = []
    for t in range(learner.T):
        # after the first update the weights have changed: the sweep holds for t = 0 only
        result = learner._solve(x, learner.clamp, 1, trace=trace, sweep=sweep, tol=None)
        sweep = None
        learner._update_params(result)
        first = first or result
        if result.trace is not None:
            traces.append(result.trace if t == 0 else result.trace[1:])
        if learner.tol is not None and t > 0:
            before, after = float(result.energy_before), float(result.energy_after)
            if abs(after - before) <= learner.tol * max(abs(before), 1e-30):
                break
    assert result is not None and first is not None
    result.energy_before = first.energy_before
    result.trace = torch.cat(traces) if traces else None
    result.steps = t + 1
    return result
