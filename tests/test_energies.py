"""Energies as objects (issue #14): every registered energy's closed form against autograd, and
the Bernoulli (binary cross-entropy) energy end to end.

Expectations: δ = w · error(x, μ) must equal −∂E/∂μ by autograd for every registered energy;
a held energy's mean(μ) must be where ∂E/∂μ vanishes for x = mean(μ); the Bernoulli value must be
torch's own ``binary_cross_entropy_with_logits``; inference and learning with a Bernoulli node
must equal the autograd reference (float64).
"""

from __future__ import annotations

import pytest
import torch

import pcgraph as pc
from pcgraph.energies import ENERGIES, get_energy

F64 = torch.float64


def _data(kind: str, shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    if kind == "cross_entropy":
        return torch.softmax(torch.randn(*shape, generator=g, dtype=F64), -1)
    if kind == "bernoulli":
        return torch.rand(*shape, generator=g, dtype=F64)
    return torch.randn(*shape, generator=g, dtype=F64)


@pytest.mark.parametrize("kind", ENERGIES.names())
def test_every_energy_error_is_minus_the_gradient_wrt_mu(kind: str) -> None:
    energy = get_energy(kind)
    g = torch.Generator().manual_seed(0)
    x = _data(kind, (4, 5), g)
    mu = torch.randn(4, 5, generator=g, dtype=F64, requires_grad=True)
    w = 0.7
    (grad,) = torch.autograd.grad(energy.value(x, mu, w), mu)
    assert torch.allclose(w * energy.error(x, mu.detach()), -grad, atol=1e-12)
    if energy.held:  # at x = mean(μ) the error vanishes: the held state is a fixed point
        m = energy.mean(mu.detach())
        assert torch.allclose(energy.error(m, mu.detach()), torch.zeros_like(m), atol=1e-12)


def test_bernoulli_value_is_torchs_binary_cross_entropy() -> None:
    g = torch.Generator().manual_seed(1)
    x, mu = torch.rand(6, 3, generator=g, dtype=F64), torch.randn(6, 3, generator=g, dtype=F64)
    want = 2.0 * torch.nn.functional.binary_cross_entropy_with_logits(mu, x, reduction="sum")
    assert float(get_energy("bce").value(x, mu, 2.0)) == pytest.approx(float(want), rel=1e-12)


def test_bernoulli_output_local_inference_and_learning_equal_autograd() -> None:
    spec = pc.mlp([4, 5, 3], activation="tanh", output_energy="bernoulli")
    g = torch.Generator().manual_seed(2)
    data = {
        "x": torch.randn(6, 4, generator=g, dtype=F64),
        "y": torch.rand(6, 3, generator=g, dtype=F64),
    }
    results = []
    for mode in ("local", "autograd"):
        net = pc.compile(spec, seed=0, dtype=F64)
        lrn = pc.PCLearner(
            net,
            init="zero",
            T=5,
            lr_neurons=0.1,
            grad_mode=mode,  # type: ignore[arg-type]
            optimizer=torch.optim.SGD(net.parameters(), lr=0.01),
        )
        m = lrn.train_step(data)
        results.append((float(m.energy_after), [p.detach().clone() for p in net.parameters()]))
    (e1, p1), (e2, p2) = results
    assert e1 == pytest.approx(e2, rel=1e-10)
    for a, b in zip(p1, p2, strict=True):
        assert torch.allclose(a, b, atol=1e-10)


def test_a_free_bernoulli_node_is_held_at_the_sigmoid_of_its_prediction() -> None:
    spec = pc.mlp([4, 5, 3], activation="tanh", output_energy="bce")
    net = pc.compile(spec, seed=0, dtype=F64)
    lrn = pc.PCLearner(net, init="zero", T=4, lr_neurons=0.1)
    x = torch.randn(5, 4, dtype=F64, generator=torch.Generator().manual_seed(3))
    result = lrn.infer({"x": x}, clamp={"x"})
    y = net.view(result.states, "y")
    assert torch.allclose(
        y, torch.sigmoid(net.prediction(result.states, net.node_index["y"])), atol=1e-12
    )
    assert ((y > 0) & (y < 1)).all()


def test_bernoulli_is_accepted_by_the_schema_under_its_aliases() -> None:
    for name in ("bernoulli", "bce", "binary_cross_entropy", "BCE"):
        node = pc.NodeSpec(name="y", shape=[1, 4, 4], energy=name)
        assert node.energy == "bernoulli"  # any shape: pixels, not classes
