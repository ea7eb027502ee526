"""The public extension surface: a user's energy and module, defined here (outside the package)
and registered through ``pc.register_energy`` / ``pc.register_op`` / ``compile(modules=...)``.

Expectations come from an independent reference written in this file: the total energy
E(x) = Σ_i E_i(x_i, μ_i(x)) of :meth:`PCNetwork.energy` (each node's ``Energy.value``), its
gradient by plain ``torch.autograd``, a hand-written SGD loop on the free states, and one SGD step
on the parameters at the final states. The matrix is parametrized over the registries
(every registered energy × every registered op × every registered solver), so a part
registered later is tested here as soon as it exists.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn

import pcgraph as pc
from pcgraph.analysis import bp_smm
from pcgraph.energies import ENERGIES, get_energy
from pcgraph.errors import SpecError
from pcgraph.ops import OPS
from pcgraph.solvers import SOLVERS

F64, F32 = torch.float64, torch.float32
T, GAMMA, LR = 4, 0.1, 0.05


# --- a user's energy and a user's module (as a researcher would write them) ---------------
class PseudoHuber(pc.Energy):
    """E = w Σ (√(1 + (x − μ)²) − 1): quadratic near 0, linear in the tails."""

    def value(self, x: torch.Tensor, mu: torch.Tensor, precision: float) -> torch.Tensor:
        d = x - mu
        return precision * (torch.sqrt(1 + d * d) - 1).sum()

    def error(self, x: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        d = x - mu
        return d / torch.sqrt(1 + d * d)


class TwoLayer(nn.Module):
    """A small MLP on an edge: two sequential products with a tanh between."""

    def __init__(self, n_in: int, n_out: int, hidden: int) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(n_in, hidden), nn.Linear(hidden, n_out)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.b(torch.tanh(self.a(s)))


def two_layer(in_shape: tuple[int, ...], out_shape: tuple[int, ...], hidden: int = 3) -> nn.Module:
    return TwoLayer(in_shape[0], out_shape[0], hidden)


class TanhDescent(pc.Solver):
    """x ← x − γ tanh(g): a bounded step per neuron (smooth, so the reference is exact)."""

    def step(
        self, x: torch.Tensor, grad: torch.Tensor, state: dict[str, Any], *, lr: float, stage: int
    ) -> None:
        x.sub_(torch.tanh(grad), alpha=lr)


# Registered for this module's tests only (other test files must not see them); the matrix
# below is parametrized over the registries as they are when tests are collected, plus these.
OWN = {"energy": "test_pseudo_huber", "op": "test_two_layer", "solver": "test_tanh_descent"}
ENERGY_NAMES = sorted({*ENERGIES.names(), OWN["energy"]})
OP_NAMES = sorted({*OPS.names(), OWN["op"]})
SOLVER_NAMES = sorted({*SOLVERS.names(), OWN["solver"]})


@pytest.fixture(scope="module", autouse=True)
def _registered() -> Iterator[None]:
    pc.register_energy(OWN["energy"], PseudoHuber())
    pc.register_op(OWN["op"], two_layer, smm=2)
    pc.register_solver(OWN["solver"], TanhDescent())
    yield
    ENERGIES.unregister(OWN["energy"])
    OPS.unregister(OWN["op"])
    SOLVERS.unregister(OWN["solver"])


# --- the graphs of the matrix ---------------------------------------------------------------
# Every registered op is placed on the edge x→h by the first of these (x shape, h shape, params)
# that its shape rules accept; an op that fits none fails the test below until it gets a case.
PLACEMENTS: list[tuple[list[int], list[int], dict[str, Any]]] = [
    ([5], [4], {}),
    ([5], [5], {}),
    ([1, 4, 4], [2, 4, 4], {"kernel_size": 3, "padding": 1}),
    ([2, 4, 4], [1, 4, 4], {"kernel_size": 3, "padding": 1}),
    ([1, 4, 4], [16], {}),
    ([16], [1, 4, 4], {}),
    ([1, 4, 4], [1, 2, 2], {"kernel_size": 2}),  # the poolings
    ([3, 4], [3, 4], {"heads": 2}),  # self_attention on [tokens, dim]
]


def _spec_dict(op: str, energy: str, x: list[int], h: list[int], params: dict[str, Any]) -> Any:
    held = get_energy(energy).held
    return {
        "name": f"{op}-{energy}",
        "nodes": [
            {"name": "x", "shape": x, "role": "input"},
            {
                "name": "h",
                "shape": h,
                "activation": "tanh",
                "energy": "gaussian" if held else energy,
            },
            {"name": "y", "shape": [3], "role": "output", "energy": energy},
        ],
        "edges": [
            {"source": "x", "target": "h", "op": op, "params": params},
            {"source": "h", "target": "y", "op": "linear" if len(h) == 1 else "dense"},
        ],
    }


def _spec(op: str, energy: str) -> pc.GraphSpec:
    """x → h → y with ``op`` on x→h. A held energy (defined on a clamped output) sits on y;
    any other on h (free) and y."""
    if op == "test_two_layer":
        return pc.GraphSpec.model_validate(_spec_dict(op, energy, [5], [4], {"hidden": 3}))
    for x, h, params in PLACEMENTS:
        if op == "dropout":  # random per batch: p = 0 here, its own tests in test_ops_pool
            params = {"p": 0.0}
        try:
            return pc.GraphSpec.model_validate(_spec_dict(op, energy, x, h, params))
        except ValueError:
            continue
    pytest.fail(f"op {op!r} fits none of PLACEMENTS: add a (x shape, h shape, params) case")


def _data(spec: pc.GraphSpec, energy: str, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, *spec.node("x").shape, generator=g, dtype=F64)
    y = torch.rand(6, 3, generator=g, dtype=F64)  # [0, 1]: fits every registered energy
    if get_energy(energy).needs_vector:
        y = y / y.sum(-1, keepdim=True)
    return {"x": x.to(dtype), "y": y.to(dtype)}


def _compile(spec: pc.GraphSpec, dtype: torch.dtype) -> pc.PCNetwork:
    modules: dict[tuple[str, str], nn.Module] = {}
    if spec.edges[0].op == "module":
        torch.manual_seed(11)
        modules[("x", "h")] = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 4))
    return pc.compile(spec, seed=0, dtype=dtype, modules=modules or None)


# --- the independent reference --------------------------------------------------------------
def _reference(
    net: pc.PCNetwork, data: dict[str, torch.Tensor], init: str, solver: str = "sgd"
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """States after T steps of ``solver`` on the free node h (each stage given the autograd
    gradient of the total energy where the previous stage left the states), then the
    parameters after one SGD step on the autograd gradient at the final states."""
    rule = SOLVERS.get(solver)
    x = torch.zeros(data["x"].shape[0], net.state_size, dtype=data["x"].dtype)
    net.write(x, data)
    h = net.node("h")
    if init == "forward":
        with torch.no_grad():
            x[:, h.cols] = net.prediction(x, h.index).reshape(x.shape[0], -1)
    state = rule.init_state(x[:, h.cols])
    for _ in range(T):
        for stage in range(rule.stages):
            x_ = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(net.energy(x_), x_)
            x = x.detach()
            with torch.no_grad():
                rule.step(x[:, h.cols], grad[:, h.cols], state, lr=GAMMA, stage=stage)
    params = list(net.parameters())
    grads = torch.autograd.grad(net.energy(x), params)
    return x[:, h.cols], [(p - LR * g).detach() for p, g in zip(params, grads, strict=True)]


def _pcgraph(
    net: pc.PCNetwork, data: dict[str, torch.Tensor], init: str, solver: str = "sgd"
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    learner = pc.PCLearner(
        net,
        init=init,
        T=T,
        lr_neurons=GAMMA,
        neuron_optimizer=solver,
        optimizer=torch.optim.SGD(net.parameters(), lr=LR),
    )
    states = learner.infer(data, train=True).states
    h = states[:, net.node("h").cols].clone()
    learner.train_step(data)
    return h, [p.detach().clone() for p in net.parameters()]


def _case_ids() -> list[Any]:
    return [
        pytest.param(op, energy, id=f"{op}-{energy}") for energy in ENERGY_NAMES for op in OP_NAMES
    ]


def _check_against_reference(op: str, energy: str, init: str, solver: str) -> None:
    spec = _spec(op, energy)
    data = _data(spec, energy, F64)
    want_h, want_p = _reference(_compile(spec, F64), data, init, solver)
    got_h, got_p = _pcgraph(_compile(spec, F64), data, init, solver)
    assert not torch.allclose(want_h, torch.zeros_like(want_h))  # inference moved something
    torch.testing.assert_close(got_h, want_h, rtol=1e-10, atol=1e-10)
    for got, want in zip(got_p, want_p, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("solver", SOLVER_NAMES)
@pytest.mark.parametrize(("op", "energy"), _case_ids())
def test_states_and_weights_equal_the_autograd_reference_float64(
    op: str, energy: str, solver: str
) -> None:
    """Every energy × every op × every solver, from a forward initialization."""
    _check_against_reference(op, energy, "forward", solver)


@pytest.mark.parametrize(("op", "energy"), _case_ids())
def test_from_zero_states_too(op: str, energy: str) -> None:
    """From x(0) = 0 (no error front, every message from the first step), plain SGD."""
    _check_against_reference(op, energy, "zero", "sgd")


@pytest.mark.parametrize(("op", "energy"), _case_ids())
def test_float32_with_the_default_paths_equals_the_float64_reference(op: str, energy: str) -> None:
    """float32 (native kernels and specialised steps where the fast paths are on) against the
    float64 reference, to 1e-4 relative to each tensor's scale."""
    spec = _spec(op, energy)
    net64 = _compile(spec, F64)
    net32 = _compile(spec, F32)
    with torch.no_grad():  # the float64 weights, rounded: both start from the same network
        for p32, p64 in zip(net32.parameters(), net64.parameters(), strict=True):
            p64.copy_(p32)
    want_h, want_p = _reference(net64, _data(spec, energy, F64), "forward")
    got_h, got_p = _pcgraph(net32, _data(spec, energy, F32), "forward")
    for got, want in zip([got_h, *got_p], [want_h, *want_p], strict=True):
        scale = float(want.abs().max()) or 1.0
        assert float((got.double() - want).abs().max()) <= 1e-4 * scale


def test_the_user_energy_differs_from_gaussian_here() -> None:
    """The matrix would not catch the engine treating the user energy as gaussian unless the
    two give different updates on this graph (they do: that was the bug)."""
    spec_u, spec_g = _spec("linear", "test_pseudo_huber"), _spec("linear", "gaussian")
    data = _data(spec_u, "gaussian", F64)
    _, pu = _reference(_compile(spec_u, F64), data, "forward")
    _, pg = _reference(_compile(spec_g, F64), data, "forward")
    assert max(float((a - b).abs().max()) for a, b in zip(pu, pg, strict=True)) > 1e-4


def test_a_user_module_keeps_its_parameters_and_declared_cost() -> None:
    spec = _spec("test_two_layer", "gaussian")
    net = _compile(spec, F64)
    assert sum(p.numel() for p in net.parameters()) == (5 * 3 + 3) + (3 * 4 + 4) + (4 * 3 + 3)
    # T steps of two passes, each two products deep (smm=2), plus a one-level forward sweep
    assert pc.smm_per_update(spec, {"x", "y"}, 4, "forward") == 2 * 4 * 2 + 1 * 2
    # backprop through the chain x →(2 products)→ h →(1)→ y: 3 forward, 2 backward
    assert bp_smm(spec) == 2 * 3 - 1


def test_a_module_with_its_own_closed_forms_is_asked_for_them() -> None:
    """On h→y, where h is free: its message and its parameter gradient are the module's."""
    calls: list[str] = []

    class Scale(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.tensor(1.5, dtype=F64))

        def forward(self, s: torch.Tensor) -> torch.Tensor:
            return self.w * s

        def vjp(self, s: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
            calls.append("vjp")
            return self.w.detach() * delta

        def param_grads(self, s: torch.Tensor, delta: torch.Tensor) -> list[torch.Tensor]:
            calls.append("param_grads")
            return [-(delta * s).sum()]

    spec = pc.GraphSpec.model_validate(
        {
            "name": "scale",
            "nodes": [
                {"name": "x", "shape": [5], "role": "input"},
                {"name": "h", "shape": [5], "activation": "tanh"},
                {"name": "y", "shape": [5], "role": "output"},
            ],
            "edges": [
                {"source": "x", "target": "h"},
                {"source": "h", "target": "y", "op": "module"},
            ],
        }
    )
    g = torch.Generator().manual_seed(5)
    data_t = {
        "x": torch.randn(6, 5, generator=g, dtype=F64),
        "y": torch.randn(6, 5, generator=g, dtype=F64),
    }
    torch.manual_seed(0)
    ref_net = pc.compile(spec, seed=0, dtype=F64, modules={("h", "y"): Scale()})
    want_h, want_p = _reference(ref_net, data_t, "zero")
    net = pc.compile(spec, seed=0, dtype=F64, modules={("h", "y"): Scale()})
    got_h, got_p = _pcgraph(net, data_t, "zero")
    assert {"vjp", "param_grads"} <= set(calls)
    torch.testing.assert_close(got_h, want_h, rtol=1e-10, atol=1e-10)
    for got, want in zip(got_p, want_p, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


# --- bad inputs ---------------------------------------------------------------------------------
def test_register_op_refuses_a_non_callable() -> None:
    with pytest.raises(SpecError, match=r"register_op\('oops'.*must be callable"):
        pc.register_op("oops", 3)


def test_register_op_refuses_a_factory_without_the_shapes() -> None:
    with pytest.raises(SpecError, match=r"must take \(in_shape, out_shape"):
        pc.register_op("oops", lambda: nn.Identity())


def test_a_module_of_the_wrong_shape_is_refused_at_compile_naming_edge_and_shapes() -> None:
    pc.register_op("test_wrong", lambda i, o: nn.Linear(i[0], o[0] + 1))
    try:
        spec = _spec("linear", "gaussian").model_dump()
        spec["edges"][0].update(op="test_wrong", bias=None)
        with pytest.raises(SpecError, match=r"edge x→h.*\[2, 5\].*needs \[B, 4\]"):
            pc.compile(pc.GraphSpec.model_validate(spec))
    finally:
        OPS.unregister("test_wrong")


def test_a_name_registered_twice_is_an_error_unless_replace() -> None:
    with pytest.raises(SpecError, match=r"registered twice.*replace=True"):
        pc.register_op("test_two_layer", two_layer)
    with pytest.raises(SpecError, match=r"registered twice.*replace=True"):
        pc.register_energy("test_pseudo_huber", PseudoHuber())
    pc.register_op("test_two_layer", two_layer, smm=2, replace=True)
    pc.register_energy("test_pseudo_huber", PseudoHuber(), replace=True)


def test_unknown_params_of_a_factory_are_refused_by_name() -> None:
    spec = _spec("test_two_layer", "gaussian").model_dump()
    spec["edges"][0]["params"] = {"hiden": 3}
    with pytest.raises(ValueError, match=r"hiden.*valid parameters: hidden"):
        pc.GraphSpec.model_validate(spec)


def test_op_module_without_its_module_names_the_edge_and_the_fix() -> None:
    spec = _spec("module", "gaussian")
    with pytest.raises(SpecError, match=r"edge x→h .*modules=\{\('x', 'h'\)"):
        pc.compile(spec)
    with pytest.raises(
        SpecError, match=r"modules given for h→y, but no edge with op: module joins"
    ):
        pc.compile(spec, modules={("x", "h"): nn.Linear(5, 4), ("h", "y"): nn.Linear(4, 3)})


def test_a_module_op_refuses_a_bias_flag() -> None:
    spec = _spec("test_two_layer", "gaussian").model_dump()
    spec["edges"][0]["bias"] = True
    with pytest.raises(ValueError, match="put the bias inside the module"):
        pc.GraphSpec.model_validate(spec)


class NoError(pc.Energy):
    def value(self, x: torch.Tensor, mu: torch.Tensor, precision: float) -> torch.Tensor:
        return ((x - mu) ** 2).sum()


class WrongError(PseudoHuber):
    def error(self, x: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        return x - mu  # the gaussian's, not this energy's


class NotOfTheDifference(pc.Energy):
    """E = Σ x² μ²: error matches −∂E/∂μ, but ∂E/∂x is another function."""

    def value(self, x: torch.Tensor, mu: torch.Tensor, precision: float) -> torch.Tensor:
        return precision * (x * x * mu * mu).sum()

    def error(self, x: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        return -2 * x * x * mu


@pytest.mark.parametrize(
    ("energy", "words"),
    [
        (NoError(), "does not define error"),
        (PseudoHuber, r"pass an instance, PseudoHuber\(\)"),
        ("gaussian", "must be an instance of a pcgraph.Energy subclass, got str"),
        (WrongError(), "is not −∂value/∂mu"),
        (NotOfTheDifference(), "is −∂E/∂μ but not ∂E/∂x"),
    ],
)
def test_register_energy_refuses_what_the_engine_cannot_use(energy: object, words: str) -> None:
    with pytest.raises(SpecError, match=words):
        pc.register_energy("test_bad", energy)  # type: ignore[arg-type]
    assert "test_bad" not in ENERGIES


def test_a_factory_that_raises_is_a_spec_error_naming_the_op_and_edge() -> None:
    def boom(in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> nn.Module:
        raise ValueError("factory blew up")

    pc.register_op("test_boom", boom)
    try:
        spec = _spec("linear", "gaussian").model_dump()
        spec["edges"][0].update(op="test_boom", bias=None)
        with pytest.raises(SpecError, match=r"edge x→h: op 'test_boom': its factory raised "):
            pc.compile(pc.GraphSpec.model_validate(spec))
    finally:
        OPS.unregister("test_boom")


def test_modules_that_are_not_modules_or_match_no_edge_are_named() -> None:
    spec = _spec("module", "gaussian")
    with pytest.raises(SpecError, match=r"modules\[\('x', 'h'\)\] is a function, not a torch"):
        pc.compile(spec, modules={("x", "h"): lambda s: s})
    with pytest.raises(SpecError, match=r"modules given for x→y.*op: module: x→h"):
        pc.compile(spec, modules={("x", "y"): nn.Linear(5, 4)})


def test_a_solver_whose_step_has_another_signature_is_refused() -> None:
    class TwoArgs(pc.Solver):
        def step(self, x, grad):  # type: ignore[no-untyped-def, override]
            x.sub_(grad)

    with pytest.raises(SpecError, match=r"cannot be called as step\(x, grad, state, \*, lr"):
        pc.register_solver("test_two_args", TwoArgs())
    assert "test_two_args" not in SOLVERS
