"""Learned precision: ``precision: learnable`` makes a gaussian node's w = exp(s) a parameter,
with the energy ½ w ‖ε‖² − ½ N log w.

Expectations come from the math: a hand-written energy (the kernels' weights read out), autograd
of it, and the optimum of w, N / ‖ε‖² (the inverse mean squared error).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import pcgraph as pc
from pcgraph.errors import SpecError

F64 = torch.float64
S_H, S_Y = 0.4, -0.7  # the log-precisions the tests start from


def spec() -> pc.GraphSpec:
    return pc.GraphSpec.from_dict(
        {
            "name": "learned_precision",
            "nodes": [
                {"name": "x", "shape": 4, "role": "input", "activation": "tanh"},
                {"name": "h", "shape": 5, "activation": "tanh", "precision": "learnable"},
                {"name": "y", "shape": 3, "role": "output", "precision": "learnable"},
            ],
            "edges": [{"source": "x", "target": "h"}, {"source": "h", "target": "y"}],
        }
    )


def network(dtype: torch.dtype = F64) -> pc.PCNetwork:
    net = pc.compile(spec(), seed=0, dtype=dtype)
    with torch.no_grad():
        net.log_precision[f"n{net.node('h').index}"].fill_(S_H)
        net.log_precision[f"n{net.node('y').index}"].fill_(S_Y)
    return net


def params(net: pc.PCNetwork) -> list[torch.Tensor]:
    k1, k2 = net.kernels
    s_h = net.log_precision[f"n{net.node('h').index}"]
    s_y = net.log_precision[f"n{net.node('y').index}"]
    return [k1.weight, k1.bias, k2.weight, k2.bias, s_h, s_y]  # type: ignore[list-item]


def hand_energy(net: pc.PCNetwork, x: torch.Tensor, p: list[torch.Tensor]) -> torch.Tensor:
    w1, b1, w2, b2, s_h, s_y = p
    xi, h, y = (x[:, net.node(n).cols] for n in ("x", "h", "y"))
    e_h = h - torch.tanh(xi) @ w1.t() - b1
    e_y = y - torch.tanh(h) @ w2.t() - b2
    return (
        0.5 * s_h.exp() * (e_h**2).sum()
        - 0.5 * e_h.numel() * s_h
        + 0.5 * s_y.exp() * (e_y**2).sum()
        - 0.5 * e_y.numel() * s_y
    )


def test_the_network_energy_is_the_hand_energy() -> None:
    net = network()
    x = torch.randn(6, net.state_size, dtype=F64, generator=torch.Generator().manual_seed(1))
    want = hand_energy(net, x, [p.detach() for p in params(net)])
    assert float(net.energy(x).detach()) == pytest.approx(float(want), rel=1e-12)


def test_inference_and_every_gradient_equal_autograd_of_the_hand_energy() -> None:
    net = network()
    T, lr = 5, 0.1
    x0 = torch.randn(4, net.state_size, dtype=F64, generator=torch.Generator().manual_seed(2))
    free = torch.zeros(net.state_size, dtype=F64)
    free[net.node("h").cols] = 1.0
    p = [q.detach().clone() for q in params(net)]
    x = x0.clone()
    for _ in range(T):
        xr = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(hand_energy(net, xr, p), xr)
        x = x - lr * g * free
    ps = [q.clone().requires_grad_(True) for q in p]
    want_grads = torch.autograd.grad(hand_energy(net, x, ps), ps)

    got = pc.solve_inference(net, x0.clone(), frozenset({"x", "y"}), T, lr=lr)
    assert torch.allclose(got.states, x, atol=1e-10, rtol=0)
    assert float(got.energy_after) == pytest.approx(float(hand_energy(net, x, p)), rel=1e-10)
    for accumulate in (False, True):  # the bound and the general weight-gradient paths
        net.zero_grad(set_to_none=not accumulate)
        got.program.param_grads(got.states, got.buffers, accumulate=accumulate)
        for q, w in zip(params(net), want_grads, strict=True):
            assert q.grad is not None
            assert torch.allclose(q.grad, w, atol=1e-10, rtol=0), q.shape


def test_learning_the_precision_alone_reaches_the_inverse_mean_squared_error() -> None:
    """Weights fixed, only s_y trained: w_y → N / ‖ε_y‖², where ∂E/∂s_y = ½ w ‖ε‖² − ½ N = 0."""
    net = network()
    s_y = net.log_precision[f"n{net.node('y').index}"]
    g = torch.Generator().manual_seed(3)
    data = {"x": torch.randn(32, 4, dtype=F64, generator=g), "y": torch.randn(32, 3, dtype=F64)}
    learner = pc.PCLearner(
        net, init="forward", T=0, optimizer=torch.optim.SGD([s_y], lr=2e-3), lr_neurons=0.1
    )
    for _ in range(400):
        learner.train_step(data)
    x = learner.infer(data, train=True).states
    eps = x[:, net.node("y").cols] - net.prediction(x, net.node("y").index)
    want = eps.numel() / float((eps**2).sum().detach())
    assert float(s_y.exp()) == pytest.approx(want, rel=1e-6)


def test_float32_fast_paths_on_equal_the_plain_reference() -> None:
    runs = []
    for on in (True, False):
        with pc.fast_paths(on):
            net = network(torch.float32)
            learner = pc.PCLearner(
                net, init="forward", T=4, optimizer=torch.optim.SGD(net.parameters(), lr=1e-2)
            )
            g = torch.Generator().manual_seed(4)
            data = {"x": torch.randn(16, 4, generator=g), "y": torch.randn(16, 3, generator=g)}
            for _ in range(3):
                learner.train_step(data)
            runs.append(torch.cat([q.detach().reshape(-1) for q in params(net)]))
    assert torch.allclose(runs[0], runs[1], atol=1e-5, rtol=1e-5)


def test_a_learnable_precision_from_yaml_trains_and_is_in_the_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "net.yaml"
    path.write_text(
        "nodes:\n"
        "  - {name: x, shape: 6, role: input}\n"
        "  - {name: y, shape: 2, role: output, precision: learnable}\n"
        "edges:\n"
        "  - {source: x, target: y}\n"
    )
    net = pc.compile(str(path), seed=0)
    assert any(k.startswith("log_precision.") for k in net.state_dict())
    learner = pc.PCLearner(net, init="forward", T=2)
    g = torch.Generator().manual_seed(5)
    data = {"x": torch.randn(64, 6, generator=g), "y": 0.1 * torch.randn(64, 2, generator=g)}
    before = net.precision("y")
    assert before == 1.0  # s starts at 0
    for _ in range(30):
        learner.train_step(data)
    assert net.precision("y") > before  # small errors: w grows


def test_epc_with_a_learned_precision_at_t0_takes_backprops_direction() -> None:
    """At T = 0 from a forward sweep only y carries error, and both rules give the same
    gradient for s_y: ½ w ‖ε_y‖² − ½ N."""
    net = network()
    g = torch.Generator().manual_seed(6)
    data = {"x": torch.randn(8, 4, dtype=F64, generator=g), "y": torch.randn(8, 3, dtype=F64)}
    grads = []
    for algorithm in ("pc", "epc"):
        learner = pc.PCLearner(
            net,
            init="forward",
            T=0,
            algorithm=algorithm,
            optimizer=torch.optim.SGD(net.parameters(), lr=0.0),
        )
        net.zero_grad(set_to_none=True)
        learner.train_step(data)
        grads.append(net.log_precision[f"n{net.node('y').index}"].grad.clone())  # type: ignore[union-attr]
    assert torch.allclose(grads[0], grads[1], atol=1e-10, rtol=0)


@pytest.mark.parametrize(
    ("nodes", "match"),
    [
        (
            [{"name": "x", "shape": 2, "precision": "learnable"}, {"name": "y", "shape": 2}],
            "'x' has no incoming edge",
        ),
        (
            [
                {"name": "x", "shape": 2},
                {"name": "y", "shape": 2, "energy": "cross_entropy", "precision": "learnable"},
            ],
            "uses cross_entropy energy",
        ),
        ([{"name": "x", "shape": 2}, {"name": "y", "shape": 2, "precision": "learn"}], "learnable"),
        ([{"name": "x", "shape": 2}, {"name": "y", "shape": 2, "precision": 0}], "positive"),
    ],
)
def test_bad_precisions_are_one_clear_error(nodes: list, match: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(SpecError, match=match):
        pc.GraphSpec.from_dict({"nodes": nodes, "edges": [{"source": "x", "target": "y"}]})


def test_the_sparse_backend_refuses_a_learned_precision() -> None:
    with pytest.raises(SpecError, match="node 'h' learns its precision"):
        pc.compile(spec(), backend="sparse")


def test_the_divergence_monitor_reads_a_negative_energy_as_a_rise_not_a_ratio() -> None:
    """A learned precision's log term can make E negative: a small rise from E(0) < 0 is not
    a divergence, a rise of more than 999 |E(0)| is, and the message says "rose"."""
    from pcgraph.engine.checks import check_growth
    from pcgraph.errors import EnergyError

    net = network()
    zero = torch.zeros(len(net.nodes), dtype=F64)
    for before, after, raises in [
        (-100.0, -50.0, False),
        (-100.0, 5e3, False),
        (-100.0, 2e5, True),
    ]:
        final = zero.clone()
        final[0] = after
        if raises:
            with pytest.raises(EnergyError, match="rose from -100 to 2e"):
                check_growth(
                    net, torch.tensor(before, dtype=F64), final, None, T=2, lr=0.1, bound=1e3
                )
        else:
            check_growth(net, torch.tensor(before, dtype=F64), final, None, T=2, lr=0.1, bound=1e3)
