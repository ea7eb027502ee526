"""The opt-in torch.compile path of the inference step gives the eager results."""

from __future__ import annotations

import pytest
import torch

import pcgraph as pc
from pcgraph.errors import ConfigError


def run(
    compile_step: bool, optimizer: str, dtype: torch.dtype = torch.float64
) -> tuple[list[float], list[torch.Tensor]]:
    net = pc.compile("topologies/mlp5_fashion.yaml", seed=0, dtype=dtype)
    learner = pc.PCLearner(
        net,
        init="forward",
        T=4,
        lr_neurons=0.05,
        neuron_optimizer=optimizer,  # type: ignore[arg-type]
        compile_step=compile_step,
        optimizer=torch.optim.SGD(net.parameters(), lr=1e-2),
    )
    g = torch.Generator().manual_seed(0)
    data = {
        "x": torch.rand(256, 784, generator=g, dtype=dtype),
        "y": torch.eye(10, dtype=dtype)[torch.randint(0, 10, (256,), generator=g)],
    }
    energies = [float(learner.train_step(data, trace=(k == 1)).energy_after) for k in range(3)]
    return energies, [p.detach().clone() for p in net.parameters()]


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
def test_compiled_steps_equal_eager(optimizer: str) -> None:
    eager, compiled = run(False, optimizer), run(True, optimizer)
    assert compiled[0] == pytest.approx(eager[0], rel=1e-10)
    for a, b in zip(eager[1], compiled[1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_compiled_steps_equal_eager_in_float32_where_eager_uses_onednn() -> None:
    # float32 products of this size go to oneDNN in eager mode (pcgraph.ops.matmul); inside
    # torch.compile they must fall back to torch's kernels instead of failing to lower
    eager, compiled = run(False, "sgd", torch.float32), run(True, "sgd", torch.float32)
    assert compiled[0] == pytest.approx(eager[0], rel=1e-4)
    for a, b in zip(eager[1], compiled[1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_compile_step_refuses_adam_neurons() -> None:
    net = pc.compile("topologies/mlp5_fashion.yaml", seed=0)
    x = net.new_states(4)
    with pytest.raises(ConfigError, match="euler, momentum, sgd neuron optimizers"):
        pc.solve_inference(net, x, "train", 2, optimizer="adam", compile_step=True)
