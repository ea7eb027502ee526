"""reconstruct_along: every T read along one inference run equals a run per T.

Gradient descent on the states with a fixed step is a Markov chain: the states after T' > T
steps are T' − T steps from the states after T. So one run of max(T) steps, read at each T,
gives each T's reconstruction as a run of its own would (float64)."""

from __future__ import annotations

import pytest
import torch

import pcgraph as pc
from pcgraph.engine.readout import along_one_run, reconstruct_along

F64 = torch.float64


def trained(init: str) -> pc.PCLearner:
    net = pc.compile(pc.schema.decoder([6, 8, 8, 12], activation="tanh"), dtype=F64)
    options = {"patterns": 16, "heads": 2, "embed_dim": 8} if init == "memory" else None
    learner = pc.PCLearner(
        net, init=init, clamp="generate", T=4, lr_neurons=0.05, init_options=options
    )
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        learner.train_step({"image": torch.rand(8, 12, generator=g, dtype=F64)})
    return learner


@pytest.mark.parametrize("init", ["zero", "null", "memory"])
def test_one_run_read_at_each_T_equals_a_run_per_T(init: str) -> None:
    # null starts from the states of the last training batch of the same size, so each
    # separate run must too: evaluation leaves them alone
    learner = trained(init)
    batch = torch.rand(8, 12, generator=torch.Generator().manual_seed(1), dtype=F64)
    assert along_one_run(learner)
    along = reconstruct_along(learner, {"image": batch}, [32, 2, 8, 8])
    assert sorted(along) == [2, 8, 32]
    for T in (2, 8, 32):
        alone = learner.reconstruct({"image": batch}, T=T)["image"]
        torch.testing.assert_close(along[T]["image"], alone, atol=1e-12, rtol=0)
    assert not torch.allclose(along[2]["image"], along[32]["image"])  # inference moved


@pytest.mark.parametrize("solver", ["momentum", "adam"])
def test_a_solver_with_state_runs_once_per_T(solver: str) -> None:
    learner = trained("zero")
    learner.neuron_optimizer = solver
    assert not along_one_run(learner)
    batch = torch.rand(8, 12, generator=torch.Generator().manual_seed(1), dtype=F64)
    along = reconstruct_along(learner, {"image": batch}, [2, 8])
    for T in (2, 8):
        alone = learner.reconstruct({"image": batch}, T=T)["image"]
        torch.testing.assert_close(along[T]["image"], alone, atol=1e-12, rtol=0)
