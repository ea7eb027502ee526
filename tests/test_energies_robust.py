"""The ``laplace`` and ``huber`` energies: their formulas, their non-smooth points, and inference
with them. Every op × solver × energy against hand autograd is in tests/test_extend.py; here the
expectations come from the definitions:

- laplace: E = w Σ |x − μ|, ε = sign(x − μ), 0 at x = μ (least-norm subgradient);
- huber (δ = 1): E = w Σ h(x − μ), h(e) = ½ e² for |e| ≤ 1 else |e| − ½, ε = clamp(x − μ, −1, 1),
  so where every |x − μ| < 1 it is the gaussian energy exactly."""

from __future__ import annotations

import pytest
import torch

import pcgraph as pc
from pcgraph.energies import Huber, get_energy
from pcgraph.errors import SpecError

F64 = torch.float64


def test_laplace_value_and_error_by_hand_with_its_non_smooth_point() -> None:
    energy = get_energy("laplace")
    x = torch.tensor([[0.5, -1.0, 2.0, 0.25]], dtype=F64)
    mu = torch.tensor([[0.0, -1.0, 3.0, 0.25]], dtype=F64)  # two entries at x = μ
    assert float(energy.value(x, mu, 2.0)) == pytest.approx(2.0 * (0.5 + 0 + 1.0 + 0))
    torch.testing.assert_close(
        energy.error(x, mu), torch.tensor([[1.0, 0.0, -1.0, 0.0]], dtype=F64)
    )
    m = mu.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(energy.value(x, m, 2.0), m)
    torch.testing.assert_close(2.0 * energy.error(x, mu), -grad)  # autograd also gives 0 there
    assert get_energy("l1") is energy


def test_huber_value_and_error_by_hand_on_both_sides_of_delta() -> None:
    energy = get_energy("huber")
    e = torch.tensor([[-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.5]], dtype=F64)
    mu = torch.zeros_like(e)
    by_hand = sum(0.5 * v * v if abs(v) <= 1 else abs(v) - 0.5 for v in e.flatten().tolist())
    assert float(energy.value(e, mu, 0.5)) == pytest.approx(0.5 * by_hand)
    torch.testing.assert_close(energy.error(e, mu), e.clamp(-1, 1))
    m = mu.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(energy.value(e, m, 0.5), m)
    torch.testing.assert_close(0.5 * energy.error(e, mu), -grad)
    other = Huber(delta=0.25)
    torch.testing.assert_close(other.error(e, mu), e.clamp(-0.25, 0.25))


@pytest.mark.parametrize("delta", [0, -1.0, float("inf"), True, "1"])
def test_huber_delta_must_be_positive_and_finite(delta: object) -> None:
    with pytest.raises(SpecError, match=r"huber: delta must be a finite number > 0"):
        Huber(delta=delta)  # type: ignore[arg-type]


def _chain(energy: str) -> pc.GraphSpec:
    return pc.GraphSpec.from_dict(
        {
            "name": f"chain-{energy}",
            "nodes": [
                {"name": "x", "shape": 4, "role": "input"},
                {"name": "h", "shape": 3, "energy": energy},
                {"name": "y", "shape": 2, "role": "output", "energy": energy},
            ],
            "edges": [
                {"source": "x", "target": "h", "op": "linear"},
                {"source": "h", "target": "y", "op": "linear"},
            ],
        }
    )


def test_huber_equals_gaussian_where_every_error_is_within_delta() -> None:
    """Same weights, same data, every |ε| < 1 along the way: the same trajectory."""
    g = torch.Generator().manual_seed(0)
    data = {"x": torch.randn(5, 4, generator=g, dtype=F64)}
    shift = 0.3 * torch.rand(5, 2, generator=g, dtype=F64)  # the output errors at init
    runs, states = {}, {}
    for energy in ("huber", "gaussian"):
        net = pc.compile(_chain(energy), seed=0, dtype=F64)
        learner = pc.PCLearner(net, init="forward", T=6, lr_neurons=0.2)
        y = learner.predict(data)["y"] + shift
        runs[energy] = learner.infer({**data, "y": y}, clamp={"x", "y"}, T=6, trace=True)
        assert runs[energy].trace is not None
        states[energy] = runs[energy].states.clone()  # the learner reuses its buffer
    # the premise: every error within δ = 1 along the way; the output's is at most 0.3 at
    # init and the energy only falls
    assert float(runs["gaussian"].trace.sum(1).max()) <= 0.5 * 5 * 2 * 0.3**2 + 1e-12
    h0 = learner.infer({**data, "y": y}, clamp={"x", "y"}, T=0).states
    assert not torch.allclose(h0, states["gaussian"])  # inference moved the states
    torch.testing.assert_close(states["huber"], states["gaussian"])


def test_laplace_inference_step_by_hand() -> None:
    """x (clamped) → h (free, gaussian) → y (clamped, laplace), identity activations: from
    forward init ε_h = 0, so one step moves h by γ w Wᵀ sign(y − W h − b)."""
    spec = pc.GraphSpec.from_dict(
        {
            "name": "laplace-out",
            "nodes": [
                {"name": "x", "shape": 4, "role": "input"},
                {"name": "h", "shape": 3},
                {"name": "y", "shape": 2, "role": "output", "energy": "laplace"},
            ],
            "edges": [
                {"source": "x", "target": "h", "op": "linear"},
                {"source": "h", "target": "y", "op": "linear"},
            ],
        }
    )
    net = pc.compile(spec, seed=1, dtype=F64)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, generator=g, dtype=F64)
    y = torch.randn(3, 2, generator=g, dtype=F64)
    learner = pc.PCLearner(net, init="forward", T=1, lr_neurons=0.1)
    clamp = {"x", "y"}
    # .clone(): a learner reuses its state buffer from one call to the next
    h0 = net.view(learner.infer({"x": x, "y": y}, clamp=clamp, T=0).states, "h").clone()
    h1 = net.view(learner.infer({"x": x, "y": y}, clamp=clamp, T=1).states, "h").clone()
    weight, bias = (p for n, p in net.named_parameters() if n.startswith("kernels.1."))
    with torch.no_grad():
        sign = (y - h0 @ weight.T - bias).sign()
        torch.testing.assert_close(h1, h0 + 0.1 * sign @ weight)
