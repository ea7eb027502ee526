"""Priors on root nodes: ``prior: {mean: m, precision: p}`` adds ½ p ‖x − m‖² to the energy.

Every expectation comes from the math: a hand-written energy (the network's kernels' weights
read out, nothing of pcgraph's energy code), autograd of it, or the closed-form MAP estimate of
a linear Gaussian model.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import pcgraph as pc
from pcgraph.errors import SpecError

F64 = torch.float64
M, P = 0.3, 2.5


def chain_spec(act: str = "tanh") -> pc.GraphSpec:
    """z (prior) → h → y: a small generative chain."""
    return pc.GraphSpec.from_dict(
        {
            "name": "prior_chain",
            "nodes": [
                {"name": "z", "shape": 3, "activation": act, "prior": {"mean": M, "precision": P}},
                {"name": "h", "shape": 4, "activation": act},
                {"name": "y", "shape": 5, "role": "output"},
            ],
            "edges": [{"source": "z", "target": "h"}, {"source": "h", "target": "y"}],
        }
    )


def hand_energy(net: pc.PCNetwork, x: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    """½‖h − W1 tanh(z) − b1‖² + ½‖y − W2 tanh(h) − b2‖² + ½ p ‖z − m‖², by hand."""
    w1, b1, w2, b2 = params
    z, h, y = (x[:, net.node(n).cols] for n in ("z", "h", "y"))
    e_h = h - torch.tanh(z) @ w1.t() - b1
    e_y = y - torch.tanh(h) @ w2.t() - b2
    return 0.5 * (e_h**2).sum() + 0.5 * (e_y**2).sum() + 0.5 * P * ((z - M) ** 2).sum()


def weights(net: pc.PCNetwork) -> list[torch.Tensor]:
    k1, k2 = net.kernels
    return [k1.weight, k1.bias, k2.weight, k2.bias]  # type: ignore[list-item]


def test_the_network_energy_is_the_hand_energy() -> None:
    net = pc.compile(chain_spec(), seed=0, dtype=F64)
    x = torch.randn(6, net.state_size, dtype=F64, generator=torch.Generator().manual_seed(1))
    want = hand_energy(net, x, [p.detach() for p in weights(net)])
    assert float(net.energy(x).detach()) == pytest.approx(float(want), rel=1e-12)
    z_energy = float(net.node_energies(x)[net.node("z").index])
    assert z_energy == pytest.approx(0.5 * P * float(((x[:, :3] - M) ** 2).sum()), rel=1e-12)


@pytest.mark.parametrize("clamp", [("y",), ("z", "y")], ids=["z-free", "z-clamped"])
def test_inference_and_weight_gradients_equal_autograd_of_the_hand_energy(
    clamp: tuple[str, ...],
) -> None:
    """T plain gradient steps on the free nodes, then ∂E/∂θ at x(T): pcgraph's local program
    against autograd of the hand energy (float64)."""
    net = pc.compile(chain_spec(), seed=0, dtype=F64)
    T, lr = 6, 0.1
    x0 = torch.randn(4, net.state_size, dtype=F64, generator=torch.Generator().manual_seed(2))
    free = torch.ones(net.state_size, dtype=F64)
    for name in clamp:
        free[net.node(name).cols] = 0.0
    params = [p.detach().clone() for p in weights(net)]
    x = x0.clone()
    for _ in range(T):
        xr = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(hand_energy(net, xr, params), xr)
        x = x - lr * g * free
    ps = [p.clone().requires_grad_(True) for p in params]
    want_grads = torch.autograd.grad(hand_energy(net, x, ps), ps)

    got = pc.solve_inference(net, x0.clone(), frozenset(clamp), T, lr=lr)
    assert torch.allclose(got.states, x, atol=1e-10, rtol=0)
    got.program.param_grads(got.states, got.buffers, accumulate=False)
    for p, w in zip(weights(net), want_grads, strict=True):
        assert p.grad is not None
        assert torch.allclose(p.grad, w, atol=1e-10, rtol=0)


def test_linear_inference_reaches_the_closed_form_map_estimate() -> None:
    """z → y, identity activations, y clamped: the fixed point of inference is the MAP
    estimate of z under y ~ N(W z + b, I), z ~ N(m, 1/p): (WᵀW + p I)⁻¹ (Wᵀ(y − b) + p m)."""
    spec = pc.GraphSpec.from_dict(
        {
            "nodes": [
                {"name": "z", "shape": 3, "prior": {"mean": M, "precision": P}},
                {"name": "y", "shape": 6, "role": "output"},
            ],
            "edges": [{"source": "z", "target": "y"}],
        }
    )
    net = pc.compile(spec, seed=0, dtype=F64)
    w, b = net.kernels[0].weight.detach(), net.kernels[0].bias.detach()  # type: ignore[union-attr]
    y = torch.randn(5, 6, dtype=F64, generator=torch.Generator().manual_seed(3))
    x = net.new_states(5)
    net.write(x, {"y": y})
    a = w.t() @ w + P * torch.eye(3, dtype=F64)
    want = torch.linalg.solve(a, (w.t() @ (y - b).t() + P * M)).t()
    got = pc.solve_inference(net, x, frozenset({"y"}), 400, lr=0.2).states
    assert torch.allclose(got[:, net.node("z").cols], want, atol=1e-9, rtol=0)


def test_float32_with_fast_paths_on_equals_the_plain_reference() -> None:
    net = pc.compile(chain_spec(), seed=0)
    x0 = torch.randn(8, net.state_size, generator=torch.Generator().manual_seed(4))
    runs = []
    for on in (True, False):
        with pc.fast_paths(on):
            runs.append(pc.solve_inference(net, x0.clone(), frozenset({"y"}), 5, lr=0.1).states)
    assert torch.allclose(runs[0], runs[1], atol=1e-5, rtol=1e-5)


def test_epc_descends_the_same_energy_with_the_prior() -> None:
    """ePC and PC share their fixed point on the linear model: the MAP estimate."""
    spec = pc.GraphSpec.from_dict(
        {
            "nodes": [
                {"name": "x", "shape": 4, "role": "input"},
                {"name": "z", "shape": 3, "prior": {"mean": M, "precision": P}},
                {"name": "y", "shape": 6, "role": "output"},
            ],
            "edges": [{"source": "x", "target": "y"}, {"source": "z", "target": "y"}],
        }
    )
    net = pc.compile(spec, seed=0, dtype=F64)
    g = torch.Generator().manual_seed(5)
    data = {"x": torch.randn(5, 4, dtype=F64, generator=g), "y": torch.randn(5, 6, dtype=F64)}
    ends = []
    for algorithm in ("pc", "epc"):
        learner = pc.PCLearner(net, init="zero", T=600, lr_neurons=0.1, algorithm=algorithm)
        ends.append(learner.infer(data, train=True).states.clone())
    z = net.node("z").cols
    assert torch.allclose(ends[0][:, z], ends[1][:, z], atol=1e-6, rtol=0)
    assert not torch.allclose(ends[0][:, z], torch.zeros_like(ends[0][:, z]))


def test_a_prior_from_yaml_trains(tmp_path: Path) -> None:
    path = tmp_path / "prior.yaml"
    path.write_text(
        "name: prior_decoder\n"
        "nodes:\n"
        "  - {name: z, shape: 4, activation: tanh, prior: {mean: 0, precision: 0.5}}\n"
        "  - {name: image, shape: 9, role: output}\n"
        "edges:\n"
        "  - {source: z, target: image}\n"
    )
    net = pc.compile(str(path), seed=0)
    assert net.node("z").prior_mean == 0.0 and net.node("z").precision == 0.5
    learner = pc.PCLearner(net, init="zero", T=4, lr_neurons=0.1)
    data = {"image": torch.rand(16, 9, generator=torch.Generator().manual_seed(6))}
    first = float(learner.train_step(data).energy_after)
    for _ in range(20):
        last = float(learner.train_step(data).energy_after)
    assert last < first


@pytest.mark.parametrize(
    ("node", "match"),
    [
        ({"name": "y", "shape": 2, "role": "output", "prior": {"mean": 0}}, "root nodes only"),
        ({"name": "y", "shape": 2, "role": "output", "prior": {"precision": 0}}, "greater than 0"),
        ({"name": "y", "shape": 2, "role": "output", "prior": {"mean": True}}, "numbers"),
        ({"name": "y", "shape": 2, "role": "output", "prior": {"sd": 1}}, "sd"),
    ],
)
def test_bad_priors_are_one_clear_error(node: dict, match: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(SpecError, match=match):
        pc.GraphSpec.from_dict(
            {"nodes": [{"name": "z", "shape": 2}, node], "edges": [{"source": "z", "target": "y"}]}
        )


def test_a_prior_root_with_another_energy_or_precision_is_refused() -> None:
    with pytest.raises(SpecError, match="a prior is Gaussian with its own precision"):
        pc.GraphSpec.from_dict(
            {
                "nodes": [
                    {"name": "z", "shape": 2, "precision": 3, "prior": {"mean": 0}},
                    {"name": "y", "shape": 2, "role": "output"},
                ],
                "edges": [{"source": "z", "target": "y"}],
            }
        )


def test_the_sparse_backend_refuses_a_prior_naming_the_node() -> None:
    with pytest.raises(SpecError, match="node 'z' has a prior"):
        pc.compile(chain_spec(), backend="sparse")
