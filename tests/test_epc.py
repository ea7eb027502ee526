"""Error-based PC (``algorithm="epc"``) against the math of pcgraph/engine/epc.py:

- x(ε) is a bijection, so ePC and PC share their fixed points: on a linear network (a strictly
  convex energy in the free states) both converge to the same states;
- from forward initialization with T = 0 the weight gradient is backprop's of the output energy;
- at a fixed point it is PC's local gradient ∂E/∂θ at fixed states;
- one ePC step moves every hidden layer (the signal crosses the sweep), one PC step from forward
  initialization only the last one;
- the sweep reproduces the initialized states (hybrid init, whose errors are not 0);
- a cyclic graph, an unknown algorithm and a solver ePC has no form for are refused by name."""

from __future__ import annotations

import pytest
import torch

import pcgraph as pc
from pcgraph.errors import ConfigError

F64 = torch.float64


def _net(activation: str = "identity", seed: int = 0) -> pc.PCNetwork:
    return pc.compile(pc.schema.mlp([5, 4, 4, 3], activation=activation), seed=seed, dtype=F64)


def _data(seed: int = 0, n: int = 6) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "x": torch.randn(n, 5, generator=g, dtype=F64),
        "y": torch.randn(n, 3, generator=g, dtype=F64),
    }


def _converged(net: pc.PCNetwork, algorithm: str, T: int, lr: float) -> torch.Tensor:
    learner = pc.PCLearner(net, init="forward", T=T, lr_neurons=lr, algorithm=algorithm)
    result = learner.infer(_data(), clamp={"x", "y"}, T=T)
    return result.states.clone()


def test_epc_and_pc_reach_the_same_fixed_point_on_a_linear_network() -> None:
    net = _net()
    pc_states = _converged(net, "pc", 1500, 0.2)
    epc_states = _converged(net, "epc", 1500, 0.2)
    # the premise: both converged (the energy's gradient in the states vanishes)
    for states in (pc_states, epc_states):
        x = states.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(net.energy(x), x)
        free = [net.node("h1").cols, net.node("h2").cols]
        assert max(float(grad[:, c].abs().max()) for c in free) < 1e-8
    torch.testing.assert_close(epc_states, pc_states, atol=1e-8, rtol=0)


def _weight_step(learner: pc.PCLearner, data: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """−(the gradient the learner applied), read from one SGD step with lr 1."""
    before = [p.detach().clone() for p in learner.net.parameters()]
    learner.train_step(data)
    return [b - p.detach() for b, p in zip(before, learner.net.parameters(), strict=True)]


def test_epc_weight_gradient_at_t0_is_backprop() -> None:
    net = _net("tanh")
    reference = _net("tanh")  # the same weights (same seed)
    data = _data()
    learner = pc.PCLearner(
        net,
        init="forward",
        T=0,
        algorithm="epc",
        optimizer=torch.optim.SGD(net.parameters(), lr=1.0),
    )
    got = _weight_step(learner, data)
    # backprop of ½‖y − f(x)‖² summed over the batch through the forward pass
    h = data["x"]
    params = list(reference.parameters())
    kernels = [k for k in reference.kernels]
    for k, kernel in enumerate(kernels):
        h = kernel(torch.tanh(h) if k > 0 else h)
    loss = 0.5 * ((data["y"] - h) ** 2).sum()
    expected = torch.autograd.grad(loss, params)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e)


def test_epc_weight_gradient_at_a_fixed_point_is_pc_local_gradient() -> None:
    net = _net("tanh")
    learner = pc.PCLearner(
        net,
        init="forward",
        T=800,
        lr_neurons=0.2,
        algorithm="epc",
        optimizer=torch.optim.SGD(net.parameters(), lr=0.0),  # keeps .grad, moves nothing
    )
    learner.train_step(_data())
    x = learner.infer(_data(), clamp={"x", "y"}, T=800).states.clone().requires_grad_(True)
    # the premise: a fixed point (∂E/∂x = 0 on the free states)
    (grad_x,) = torch.autograd.grad(net.energy(x), x, retain_graph=True)
    assert max(float(grad_x[:, net.node(n).cols].abs().max()) for n in ("h1", "h2")) < 1e-9
    local = torch.autograd.grad(net.energy(x), list(net.parameters()))
    for p, e in zip(net.parameters(), local, strict=True):
        assert p.grad is not None
        torch.testing.assert_close(p.grad, e, atol=1e-8, rtol=1e-7)


def test_one_epc_step_moves_every_hidden_layer_one_pc_step_only_the_last() -> None:
    net = _net("tanh")
    start = _converged(net, "pc", 0, 0.1)
    moved = {}
    for algorithm in ("pc", "epc"):
        after = _converged(net, algorithm, 1, 0.1)
        moved[algorithm] = [
            float((after[:, net.node(n).cols] - start[:, net.node(n).cols]).abs().max())
            for n in ("h1", "h2")
        ]
    assert moved["pc"][0] == 0.0 and moved["pc"][1] > 0  # PC: the error reached h2 only
    assert moved["epc"][0] > 0 and moved["epc"][1] > 0


def test_the_sweep_reproduces_hybrid_initialized_states() -> None:
    net = pc.compile(pc.schema.mlp([5, 4, 4, 4, 3]), seed=1, dtype=F64)
    data = _data(n=9)
    data["y"] = torch.nn.functional.one_hot(torch.arange(9) % 3, 3).to(F64)
    learner = pc.PCLearner(net, init="hybrid", T=2, lr_neurons=0.05, algorithm="epc")
    for _ in range(2):  # the second batch starts from class averages (errors ≠ 0)
        learner.train_step(data)
    ref = pc.PCLearner(net, init=learner.initializer, T=0)
    expected = ref.infer(data, clamp={"x", "y"}, train=True, T=0).states.clone()
    got = learner.infer(data, clamp={"x", "y"}, train=True, T=0).states
    torch.testing.assert_close(got, expected)


def test_bad_options_are_refused_by_name() -> None:
    loop = pc.compile("topologies/loop.yaml", seed=0)
    with pytest.raises(ConfigError, match=r"algorithm='epc' needs a DAG.*cycle"):
        pc.PCLearner(loop, algorithm="epc", init="zero")
    with pytest.raises(ConfigError, match=r"algorithm"):
        pc.PCLearner(_net(), algorithm="bogus")
    with pytest.raises(ConfigError, match=r"neuron_optimizer='heun'"):
        pc.PCLearner(_net(), algorithm="epc", neuron_optimizer="heun")


def test_epc_predict_keeps_the_forward_pass_with_a_held_output() -> None:
    """x clamped, y free with a cross-entropy energy (held at softmax(μ), no message): from
    forward init every error is 0 and F has nothing to descend, so ePC's prediction is the
    forward pass, PC's too — the output's entropy is not minimized."""
    net = pc.compile(
        pc.schema.mlp([5, 4, 3], activation="tanh", output_energy="cross_entropy"),
        seed=0,
        dtype=F64,
    )
    x = _data()["x"]
    got = pc.PCLearner(net, init="forward", T=5, lr_neurons=0.5, algorithm="epc").predict({"x": x})
    want = pc.PCLearner(net, init="forward", T=5, lr_neurons=0.5).predict({"x": x})
    torch.testing.assert_close(got["y"], want["y"])
