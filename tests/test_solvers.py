"""Inference solvers (Euler, Heun), the tolerance stop, and incremental PC (issue #16).

Expectations come from the math: the closed-form solution of the inference ODE of a linear
Gaussian chain (for the orders of convergence), a hand-written Heun step on autograd gradients,
and the definition of iPC (with a vanishing weight learning rate it follows standard PC's
inference trajectory, and its weight change per unit of learning rate is the sum of the
gradients along that trajectory).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import pcgraph as pc
from pcgraph.errors import ConfigError
from pcgraph.init import ForwardInit, InitContext

F64 = torch.float64
TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def linear_chain() -> tuple[pc.PCNetwork, torch.Tensor, frozenset[str]]:
    """x (clamped) → h (free) → y (clamped), identity activations: E is quadratic in h."""
    net = pc.compile(pc.mlp([3, 4, 2], activation="identity"), seed=0, dtype=F64)
    g = torch.Generator().manual_seed(1)
    x = net.new_states(2)
    net.write(
        x,
        {
            "x": torch.randn(2, 3, generator=g, dtype=F64),
            "y": torch.randn(2, 2, generator=g, dtype=F64),
        },
    )
    x[:, net.nodes[net.node_index["h1"]].cols] = torch.randn(2, 4, generator=g, dtype=F64)
    return net, x, frozenset({"x", "y"})


def exact_h(net: pc.PCNetwork, x0: torch.Tensor, t_end: float) -> torch.Tensor:
    """h(t) of dh/dt = −∂E/∂h = −(A h − c): h* + exp(−A t)(h(0) − h*), per sample."""
    k1, k2 = net.kernels[0], net.kernels[1]
    W2 = k2.weight.detach()
    A = torch.eye(4, dtype=F64) + W2.T @ W2
    xin, y = net.view(x0, "x"), net.view(x0, "y")
    c = xin @ k1.weight.detach().T + k1.bias.detach() + (y - k2.bias.detach()) @ W2
    h_star = torch.linalg.solve(A, c.T).T
    h0 = net.view(x0, "h1")
    return h_star + (h0 - h_star) @ torch.linalg.matrix_exp(-A * t_end).T


@pytest.mark.parametrize(("solver", "order"), [("euler", 1), ("heun", 2)])
def test_solver_converges_to_the_ode_solution_at_its_order(solver: str, order: int) -> None:
    net, x0, clamp = linear_chain()
    t_end = 0.8
    errors = []
    for T in (8, 16, 32):
        x = x0.clone()
        pc.solve_inference(net, x, clamp, T, optimizer=solver, lr=t_end / T)  # type: ignore[arg-type]
        errors.append(float((net.view(x, "h1") - exact_h(net, x0, t_end)).abs().max()))
    ratios = [errors[i] / errors[i + 1] for i in range(2)]
    for r in ratios:  # halving the step divides the error by 2^order
        assert r == pytest.approx(2.0**order, rel=0.12), (errors, ratios)


def test_euler_is_the_sgd_update() -> None:
    net, x0, clamp = linear_chain()
    a, b = x0.clone(), x0.clone()
    pc.solve_inference(net, a, clamp, 5, optimizer="sgd", lr=0.1)
    pc.solve_inference(net, b, clamp, 5, optimizer="euler", lr=0.1)
    assert torch.equal(a, b)


def energy_grad(net: pc.PCNetwork, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    x_ = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(net.energy(x_), x_)
    return g * mask


def test_heun_matches_a_hand_written_heun_step_on_a_dag() -> None:
    net = pc.compile(TOPOLOGIES / "skip_mlp.yaml", dtype=F64, seed=0)
    clamp = frozenset({"x"})  # y (cross-entropy) free: held at softmax(μ) by inference
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(3, net.state_size, generator=g, dtype=F64)
    mask = torch.zeros(net.state_size, dtype=F64)
    for n in net.nodes:
        if n.name not in clamp and n.energy != "cross_entropy":
            mask[n.cols] = 1.0

    def hold(x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        y = net.nodes[net.node_index["y"]]
        x[:, y.cols] = torch.softmax(net.prediction(x, y.index).detach(), -1)
        return x

    ref, lr = x0.clone(), 0.05
    for _ in range(4):
        ref = hold(ref)
        g1 = energy_grad(net, ref, mask)
        pred = hold(ref - lr * g1)
        g2 = energy_grad(net, pred, mask)
        ref = ref - lr / 2 * (g1 + g2)
    ref = hold(ref)
    got = x0.clone()
    pc.solve_inference(net, got, clamp, 4, optimizer="heun", lr=lr)
    assert torch.allclose(got, ref, atol=1e-10, rtol=0)


def test_tolerance_stops_at_the_first_small_energy_change() -> None:
    net, x0, clamp = linear_chain()
    full = pc.solve_inference(net, x0.clone(), clamp, 40, lr=0.1, trace=True)
    assert full.trace is not None and full.steps == 40
    energies = full.trace.sum(1).tolist()
    tol = 1e-2
    want = next(
        t for t in range(1, 41) if abs(energies[t] - energies[t - 1]) <= tol * energies[t - 1]
    )
    stopped = pc.solve_inference(net, x0.clone(), clamp, 40, lr=0.1, tol=tol, trace=True)
    assert stopped.steps == want < 40
    assert float(stopped.energy_after) == pytest.approx(energies[want], rel=1e-12)
    assert stopped.trace is not None and stopped.trace.shape[0] == want + 1


def test_tolerance_is_refused_where_it_cannot_run() -> None:
    net, x0, clamp = linear_chain()
    with pytest.raises(ConfigError, match="no tol"):
        pc.solve_inference(net, x0, clamp, 4, tol=1e-3, compile_step=True)
    with pytest.raises(ConfigError, match="tol"):
        pc.solve_inference(net, x0, clamp, 4, tol=-1.0)
    with pytest.raises(ConfigError, match="heun"):
        pc.solve_inference(net, x0, clamp, 4, optimizer="heun", compile_step=True)


# --- incremental PC ----------------------------------------------------------------------------
def learners(alpha: float) -> tuple[pc.PCLearner, pc.PCLearner]:
    out = []
    for schedule in ("standard", "incremental"):
        net = pc.compile(pc.mlp([5, 4, 4, 3], activation="tanh"), seed=0, dtype=F64)
        opt = torch.optim.SGD(net.parameters(), lr=alpha)
        out.append(
            pc.PCLearner(net, init="forward", T=4, lr_neurons=0.1, optimizer=opt, schedule=schedule)
        )
    return out[0], out[1]


def batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(4)
    return {
        "x": torch.randn(6, 5, generator=g, dtype=F64),
        "y": torch.randn(6, 3, generator=g, dtype=F64),
    }


def test_ipc_with_a_vanishing_weight_rate_is_standard_pc() -> None:
    std, inc = learners(1e-13)
    a = std.train_step(batch())
    b = inc.train_step(batch())
    assert float(b.energy_after) == pytest.approx(float(a.energy_after), rel=1e-10)
    assert torch.allclose(b.node_energies, a.node_energies, rtol=1e-10, atol=1e-14)
    assert a.smm == b.smm  # the per-step weight gradient adds no sequential product


def test_ipc_weight_change_is_the_sum_of_gradients_along_the_trajectory() -> None:
    alpha = 1e-7
    _, inc = learners(alpha)
    before = [p.detach().clone() for p in inc.net.parameters()]
    inc.train_step(batch())
    change = [(p.detach() - q) / -alpha for p, q in zip(inc.net.parameters(), before, strict=True)]
    # reference: standard PC's trajectory x_1 … x_T from the same init, with the weights fixed,
    # and the autograd gradient of the energy w.r.t. the weights at each x_t
    net = pc.compile(pc.mlp([5, 4, 4, 3], activation="tanh"), seed=0, dtype=F64)
    x = net.new_states(6)
    net.write(x, batch())
    clamp = frozenset({"x", "y"})
    ForwardInit().init(x, InitContext(net, clamp))
    total = [torch.zeros_like(p) for p in net.parameters()]
    for _ in range(4):
        pc.solve_inference(net, x, clamp, 1, lr=0.1)
        with torch.enable_grad():
            grads = torch.autograd.grad(net.energy(x.detach()), list(net.parameters()))
        total = [t + g for t, g in zip(total, grads, strict=True)]
    for got, want in zip(change, total, strict=True):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("init", ["forward", "hybrid", "zero"])
def test_ipc_runs_with_initializers_and_on_a_cyclic_graph(init: str) -> None:
    net = pc.compile(pc.mlp([5, 4, 4, 3], activation="tanh"), seed=0, dtype=F64)
    lrn = pc.PCLearner(net, init=init, T=3, lr_neurons=0.1, schedule="incremental")
    labels = torch.arange(6) % 3
    data = {"x": batch()["x"], "y": torch.nn.functional.one_hot(labels, 3).to(F64)}
    m = lrn.train_step(data, labels=labels)
    assert math.isfinite(float(m.energy_after))
    loop = pc.compile(TOPOLOGIES / "loop.yaml", dtype=F64, seed=0)
    lrn = pc.PCLearner(loop, init="memory", T=3, lr_neurons=0.05, schedule="incremental")
    g = torch.Generator().manual_seed(0)
    data = {n: torch.randn(4, *loop.node(n).shape, generator=g, dtype=F64) for n in lrn.clamp}
    assert math.isfinite(float(lrn.train_step(data).energy_after))


def test_bad_schedule_is_refused() -> None:
    net = pc.compile(pc.mlp([5, 3]), seed=0)
    with pytest.raises(ConfigError, match="schedule"):
        pc.PCLearner(net, schedule="online")


def test_ipc_honours_the_tolerance_and_counts_only_the_steps_taken() -> None:
    _, inc = learners(1e-3)
    full = inc.train_step(batch())
    _, inc = learners(1e-3)
    inc.tol = 10.0  # any change is "small": stop after the second step
    stopped = inc.train_step(batch())
    assert stopped.smm == full.smm - 2 * 2  # 2 of the 4 steps, 2 SMMs each
