"""Neuron solvers as one registry (``pcgraph.solvers.SOLVERS``, ``pcgraph.register_solver``).

Every registered solver is checked against its update written out from the math, on ∂E/∂x taken
by ``torch.autograd`` from ``net.energy``: x − γ g (sgd, euler), heavy-ball momentum, Adam with
its bias corrections, Heun's average of two gradients. Solvers defined here, outside the
package (sign SGD, a clipped SGD that subclasses the built-in, the explicit midpoint method of
two stages), go through the same entry points as the built-in ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import pcgraph as pc
from pcgraph.errors import ConfigError, SpecError
from pcgraph.solvers import SOLVERS, Adam, GradientDescent, Momentum

F64 = torch.float64
TOPOLOGY = Path(__file__).resolve().parent.parent / "topologies" / "mlp5_fashion.yaml"
LR = 0.05
T = 6
Grad = Callable[[torch.Tensor], torch.Tensor]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- the network and ∂E/∂x from autograd --------------------------------------------------------
def small_net() -> pc.PCNetwork:
    """x → h1 → h2 → y, tanh: two free hidden layers under the train clamp set."""
    return pc.compile(pc.mlp([3, 5, 4, 2], activation="tanh"), seed=0, dtype=F64)


def data(batch: int = 4) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return {
        "x": torch.randn(batch, 3, generator=g, dtype=F64),
        "y": torch.randn(batch, 2, generator=g, dtype=F64),
    }


def random_states(net: pc.PCNetwork) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, net.state_size, generator=g, dtype=F64)
    net.write(x, data())
    return x


def energy_grad(net: pc.PCNetwork, clamp: frozenset[str]) -> Grad:
    """g(x) = ∂E/∂x on the free nodes, 0 on the clamped ones (they never move)."""
    mask = torch.zeros(net.state_size, dtype=net.dtype)
    for n in net.nodes:
        if n.name not in clamp:
            mask[n.cols] = 1.0

    def grad(x: torch.Tensor) -> torch.Tensor:
        x_ = x.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(net.energy(x_), x_)
        return g * mask

    return grad


# --- the updates, from their definitions --------------------------------------------------------
def gradient_descent(x: torch.Tensor, grad: Grad, lr: float, steps: int) -> torch.Tensor:
    for _ in range(steps):
        x = x - lr * grad(x)
    return x


def heavy_ball(mu: float) -> Callable[[torch.Tensor, Grad, float, int], torch.Tensor]:
    def run(x: torch.Tensor, grad: Grad, lr: float, steps: int) -> torch.Tensor:
        m = torch.zeros_like(x)
        for _ in range(steps):
            m = mu * m + grad(x)
            x = x - lr * m
        return x

    return run


def adam(
    b1: float, b2: float, eps: float = 1e-8
) -> Callable[[torch.Tensor, Grad, float, int], torch.Tensor]:
    def run(x: torch.Tensor, grad: Grad, lr: float, steps: int) -> torch.Tensor:
        m, v = torch.zeros_like(x), torch.zeros_like(x)
        for t in range(1, steps + 1):
            g = grad(x)
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
            x = x - lr * m_hat / (v_hat.sqrt() + eps)
        return x

    return run


def heun(x: torch.Tensor, grad: Grad, lr: float, steps: int) -> torch.Tensor:
    for _ in range(steps):
        g1 = grad(x)
        g2 = grad(x - lr * g1)
        x = x - lr / 2 * (g1 + g2)
    return x


def sign_descent(x: torch.Tensor, grad: Grad, lr: float, steps: int) -> torch.Tensor:
    for _ in range(steps):
        x = x - lr * torch.sign(grad(x))
    return x


def clipped_descent(x: torch.Tensor, grad: Grad, lr: float, steps: int) -> torch.Tensor:
    for _ in range(steps):
        x = x - lr * grad(x).clamp(-CLIP, CLIP)
    return x


def midpoint(x: torch.Tensor, grad: Grad, lr: float, steps: int) -> torch.Tensor:
    for _ in range(steps):
        x = x - lr * grad(x - lr / 2 * grad(x))
    return x


REFERENCES: dict[str, Callable[[torch.Tensor, Grad, float, int], torch.Tensor]] = {
    "sgd": gradient_descent,
    "euler": gradient_descent,
    "momentum": heavy_ball(0.9),
    "adam": adam(0.9, 0.999),
    "heun": heun,
}


# --- solvers of a user's, outside the package ---------------------------------------------------
CLIP = 0.02


class SignSGD(pc.Solver):
    """x ← x − γ sign(g)."""

    def step(
        self, x: torch.Tensor, grad: torch.Tensor, state: dict[str, Any], *, lr: float, stage: int
    ) -> None:
        x.sub_(torch.sign(grad), alpha=lr)


class ClippedSGD(GradientDescent):
    """x ← x − γ clip(g): a subclass of the built-in, so the SGD fast paths must not take it."""

    def step(
        self, x: torch.Tensor, grad: torch.Tensor, state: dict[str, Any], *, lr: float, stage: int
    ) -> None:
        x.sub_(grad.clamp(-CLIP, CLIP), alpha=lr)


class Midpoint(pc.Solver):
    """The explicit midpoint method, two stages: x̃ = x − γ/2 g(x), then x ← x − γ g(x̃)."""

    stages = 2

    def init_state(self, x: torch.Tensor) -> dict[str, Any]:
        return {"start": torch.zeros_like(x)}

    def step(
        self, x: torch.Tensor, grad: torch.Tensor, state: dict[str, Any], *, lr: float, stage: int
    ) -> None:
        if stage == 0:
            state["start"].copy_(x)
            x.sub_(grad, alpha=lr / 2)
        else:
            x.copy_(state["start"]).sub_(grad, alpha=lr)


USER = {
    "sign_sgd": (SignSGD(), sign_descent),
    "clipped_sgd": (ClippedSGD(), clipped_descent),
    "midpoint": (Midpoint(), midpoint),
    "momentum_half": (Momentum(momentum=0.5), heavy_ball(0.5)),
    "adam_fast": (Adam(betas=(0.8, 0.99)), adam(0.8, 0.99)),
}


@pytest.fixture
def user_solvers() -> Iterator[None]:
    """Register the user solvers for one test, and only for it (the registry is global)."""
    for name, (solver, _) in USER.items():
        pc.register_solver(name, solver)
    yield
    for name in USER:
        SOLVERS.unregister(name)


def built_in() -> list[str]:
    """The registered solvers that pcgraph defines. (A test module may register its own at
    import, for its own parametrization, and remove it when its tests end: a name collected
    here would be gone when the test runs.)"""
    return [n for n in SOLVERS.names() if type(SOLVERS.get(n)).__module__.startswith("pcgraph.")]


def expected_after(net: pc.PCNetwork, x0: torch.Tensor, name: str, steps: int) -> torch.Tensor:
    reference = REFERENCES[name] if name in REFERENCES else USER[name][1]
    return reference(x0.clone(), energy_grad(net, frozenset({"x", "y"})), LR, steps)


# --- every registered solver follows its math ---------------------------------------------------
def test_every_built_in_solver_has_a_reference_here() -> None:
    assert sorted(REFERENCES) == built_in()


@pytest.mark.parametrize("name", built_in())
@pytest.mark.parametrize("grad_mode", ["local", "autograd"])
def test_solver_steps_like_its_math(name: str, grad_mode: str) -> None:
    net = small_net()
    x0 = random_states(net)
    x = x0.clone()
    pc.solve_inference(
        net,
        x,
        {"x", "y"},
        T,
        optimizer=name,
        lr=LR,
        grad_mode=grad_mode,  # type: ignore[arg-type]
    )
    torch.testing.assert_close(x, expected_after(net, x0, name, T), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", built_in())
def test_solver_after_a_forward_sweep_steps_like_its_math(name: str) -> None:
    """After forward init the engine may step only the nodes the error front has reached
    (and fuse the SGD step into the message pass): the states are those of the math."""
    net = small_net()
    learner = pc.PCLearner(net, init="forward", T=T, lr_neurons=LR, neuron_optimizer=name)
    x0 = learner.infer(data(), T=0).states.clone()
    got = learner.infer(data()).states
    torch.testing.assert_close(got, expected_after(net, x0, name, T), rtol=1e-9, atol=1e-12)


# --- solvers of a user's ------------------------------------------------------------------------
@pytest.mark.usefixtures("user_solvers")
@pytest.mark.parametrize("name", sorted(USER))
def test_user_solver_drives_the_learner(name: str) -> None:
    """Through ``PCLearner(neuron_optimizer=name)`` after forward init, where the built-in SGD
    takes its fast paths: a clipped SGD that subclasses it must still be clipped."""
    net = small_net()
    learner = pc.PCLearner(net, init="forward", T=T, lr_neurons=LR, neuron_optimizer=name)
    x0 = learner.infer(data(), T=0).states.clone()
    got = learner.infer(data()).states
    torch.testing.assert_close(got, expected_after(net, x0, name, T), rtol=1e-9, atol=1e-12)


@pytest.mark.usefixtures("user_solvers")
@pytest.mark.parametrize("name", ["sgd", "clipped_sgd", "momentum_half"])
def test_fused_float32_steps_are_the_built_in_sgd_only(name: str) -> None:
    """In float32 on the CPU, the built-in SGD after a forward sweep is fused into the message
    pass (pcgraph.compiler.steps.sgd_message_step); a subclass of it, or any other user
    solver, must take the general path and keep its own update."""
    net = pc.compile(pc.mlp([3, 5, 4, 2], activation="tanh"), seed=0, dtype=torch.float32)
    learner = pc.PCLearner(net, init="forward", T=T, lr_neurons=LR, neuron_optimizer=name)
    batch = {k: v.float() for k, v in data().items()}
    x0 = learner.infer(batch, T=0).states.clone()
    got = learner.infer(batch).states
    reference = REFERENCES[name] if name in REFERENCES else USER[name][1]
    want = reference(x0, energy_grad(net, frozenset({"x", "y"})), LR, T)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.usefixtures("user_solvers")
def test_user_solver_differs_from_sgd_where_its_math_does() -> None:
    """The clip is active on this problem (else the test above could not tell it from SGD)."""
    net = small_net()
    x0 = random_states(net)
    sgd = expected_after(net, x0, "sgd", T)
    assert not torch.allclose(expected_after(net, x0, "clipped_sgd", T), sgd, atol=1e-6)


@pytest.mark.usefixtures("user_solvers")
def test_a_two_stage_user_solver_counts_two_gradient_evaluations() -> None:
    """Each gradient evaluation is a prediction pass and a message pass: 2 sequential products
    on this chain of linear edges, so a second stage adds 2 per inference step."""

    def smm(name: str) -> int:
        learner = pc.PCLearner(small_net(), init="forward", T=T, neuron_optimizer=name)
        return learner.train_step(data()).smm

    assert smm("midpoint") - smm("sgd") == 2 * T
    assert smm("midpoint") == smm("heun")


@pytest.mark.usefixtures("user_solvers")
def test_user_solver_needs_the_eager_runner_for_compile_step() -> None:
    net = small_net()
    with pytest.raises(ConfigError, match="'sign_sgd'"):
        pc.solve_inference(
            net, random_states(net), "train", 2, optimizer="sign_sgd", compile_step=True
        )


def test_a_step_that_does_not_write_into_x_is_an_error() -> None:
    class Rebinds(pc.Solver):
        def step(
            self,
            x: torch.Tensor,
            grad: torch.Tensor,
            state: dict[str, Any],
            *,
            lr: float,
            stage: int,
        ) -> None:
            x = x - lr * grad  # the mistake under test: rebinds the name, moves nothing

    pc.register_solver("rebinds", Rebinds)
    try:
        net = small_net()
        with pytest.raises(ConfigError, match=r"'rebinds'.*in place"):
            pc.solve_inference(net, random_states(net), "train", 2, optimizer="rebinds")
    finally:
        SOLVERS.unregister("rebinds")


def test_a_first_stage_that_only_records_is_not_taken_for_that_mistake() -> None:
    """Stage 0 keeps g(x) and moves nothing; stage 1 steps with the average of both gradients
    (Heun written the other way round): the in-place check looks at the last stage only."""

    class Averaged(pc.Solver):
        stages = 2

        def step(
            self,
            x: torch.Tensor,
            grad: torch.Tensor,
            state: dict[str, Any],
            *,
            lr: float,
            stage: int,
        ) -> None:
            if stage == 0:
                state["g"] = grad.clone()
            else:
                x.sub_(state["g"] + grad, alpha=lr / 2)

    pc.register_solver("averaged", Averaged)
    try:
        net = small_net()
        x = random_states(net)
        pc.solve_inference(net, x, "train", 2, optimizer="averaged")  # no ConfigError
    finally:
        SOLVERS.unregister("averaged")


# --- registration -------------------------------------------------------------------------------
def test_registering_a_name_twice_needs_replace() -> None:
    pc.register_solver("sign_sgd", SignSGD())
    try:
        with pytest.raises(SpecError, match=r"registered twice.*replace=True"):
            pc.register_solver("sign_sgd", SignSGD())
        with pytest.raises(SpecError, match="registered twice"):
            pc.register_solver("sgd", SignSGD())
        other = SignSGD()
        assert pc.register_solver("sign-SGD", other, replace=True) is other
        assert SOLVERS.get("sign_sgd") is other
    finally:
        SOLVERS.unregister("sign_sgd")
    assert "sign_sgd" not in SOLVERS


def test_a_class_is_registered_as_its_instance() -> None:
    solver = pc.register_solver("sign_sgd", SignSGD)
    try:
        assert isinstance(solver, SignSGD)
        assert SOLVERS.get("sign_sgd") is solver
    finally:
        SOLVERS.unregister("sign_sgd")


class NoStep(pc.Solver):
    stages = 1


class NeedsArguments(SignSGD):
    def __init__(self, scale: float) -> None:
        self.scale = scale


class NoStages(SignSGD):
    stages = 0


@pytest.mark.parametrize(
    ("solver", "expected"),
    [
        (NoStep(), r"'mine': NoStep does not define step\(\); subclass pcgraph.Solver"),
        (NoStep, r"NoStep does not define step\(\)"),
        (lambda x, g: None, "got function, not a Solver; subclass pcgraph.Solver and define step"),
        (torch.optim.SGD, "SGD is not a Solver"),
        (NeedsArguments, r"cannot be built without arguments.*pass an instance"),
        (NoStages(), "stages .* must be a whole number ≥ 1, got 0"),
    ],
)
def test_a_bad_solver_is_one_clear_error(solver: object, expected: str) -> None:
    with pytest.raises(SpecError, match=expected):
        pc.register_solver("mine", solver)  # type: ignore[arg-type]
    assert "mine" not in SOLVERS


@pytest.mark.usefixtures("user_solvers")
def test_an_unknown_name_lists_every_registered_solver() -> None:
    with pytest.raises(ConfigError) as info:
        pc.PCLearner(small_net(), neuron_optimizer="rmsprop")
    message = str(info.value)
    assert "neuron_optimizer 'rmsprop' is not one of" in message
    for name in SOLVERS.names():
        assert name in message
    assert "pcgraph.register_solver" in message


def test_names_are_normalised_like_every_registry() -> None:
    learner = pc.PCLearner(small_net(), neuron_optimizer="SGD")
    assert learner.neuron_optimizer == "sgd"


@pytest.mark.usefixtures("user_solvers")
def test_cli_train_takes_a_registered_solver(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``pcgraph train --neuron-optimizer NAME`` accepts a solver registered in this process
    (from the shell: ``--plugin MODULE``, see tests/test_cli_plugin.py) and records it."""
    import json

    from pcgraph.cli.main import main

    out = tmp_path / "run"

    def train(solver: str) -> int:
        sizes = ["--train-size", "50", "--test-size", "20", "--batch-size", "25", "--T", "2"]
        neurons = ["--neuron-optimizer", solver, "--lr-neurons", "0.01"]
        return main(["train", str(TOPOLOGY), "--embedded", "--out", str(out), *sizes, *neurons])

    assert train("sign-sgd") == 0, capsys.readouterr().err
    assert json.loads((out / "options.json").read_text())["neuron_optimizer"] == "sign-sgd"
    assert train("rmsprop") == 2
    err = capsys.readouterr().err
    assert "--neuron-optimizer 'rmsprop' is not one of" in err and "sign_sgd" in err
