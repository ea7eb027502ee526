"""Neuron solvers: how inference moves the free neurons, given the energy gradient g = ∂E/∂x.

One registry, :data:`SOLVERS`, holds every rule a name may select (``PCLearner(
neuron_optimizer=...)``, ``solve_inference(optimizer=...)``, ``pcgraph train
--neuron-optimizer``). The built-in ones:

- sgd: x ← x − γ g, the paper's update (the reference).
- euler: the same update read as the explicit Euler method for the inference ODE
  dx/dt = −∂E/∂x with step γ.
- momentum: m ← μ m + g, x ← x − γ m (heavy ball; torch's ``SGD(momentum=μ)``).
- adam: m ← β₁ m + (1 − β₁) g, v ← β₂ v + (1 − β₂) g², x ← x − γ m̂ / (√v̂ + ε) with the
  bias corrections m̂ = m / (1 − β₁ᵗ), v̂ = v / (1 − β₂ᵗ) (torch's ``Adam``).
- heun: Heun's second-order method for dx/dt = −∂E/∂x: the predictor x̃ = x − γ g(x), then
  x ← x − γ/2 (g(x) + g(x̃)) (two gradient evaluations per step).

A solver of your own subclasses :class:`Solver` and is registered with
:func:`register_solver`; the package is never edited to add one. This module imports no torch,
so that the CLI can list the names without it.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from pcgraph.errors import ConfigError, SpecError
from pcgraph.registry import Registry

if TYPE_CHECKING:
    import torch

__all__ = [
    "SOLVERS",
    "Adam",
    "GradientDescent",
    "Heun",
    "Momentum",
    "NeuronOptimizer",
    "Solver",
    "get_solver",
    "is_gradient_descent",
    "register_solver",
]

NeuronOptimizer = str
"""The name of a neuron solver registered in :data:`SOLVERS` (``"sgd"``, ``"heun"``, …)."""

SolverState = dict[str, Any]


class Solver:
    """A rule that moves the free neurons of one inference step, given g = ∂E/∂x.

    Subclass it, implement :meth:`step` (and :meth:`init_state` where the rule keeps state
    across steps), and register an instance with :func:`register_solver`. The engine calls,
    per inference run (one minibatch): ``state = init_state(x)`` (or ``reset(state)`` on a
    state it keeps from an earlier run on the same buffer), then for each of the T steps
    ``step(x, g, state, lr=γ, stage=0)``, …, ``stage=stages − 1``.

    Attributes:
        stages: gradient evaluations per inference step. Stage 0 receives g at x(t); before
            each further stage s the engine evaluates g again at the states that stage s − 1
            left in ``x``; the last stage leaves x(t+1). Heun: 2 (stage 0 writes the predictor
            x̃ and keeps g(x) in its state, stage 1 the corrected step).
        compilable: :meth:`step` can be traced once by ``torch.compile`` and replayed for
            every step (``compile_step=True``): it changes no Python value between calls
            (Adam's step count t does, so Adam is not). Single-stage solvers only.
        rests_at_zero_gradient: a free node whose g has been exactly 0 at every step of a run
            so far has not moved. After a forward sweep this lets the engine skip the errors
            that are still exactly 0 (the error front); a solver that does not declare it is
            run on every node's error, which computes the same states.
    """

    stages: int = 1
    compilable: bool = False
    rests_at_zero_gradient: bool = False

    def init_state(self, x: torch.Tensor) -> SolverState:
        """The state of a run that steps ``x`` ([B, D_free], the free neurons' states): e.g.
        a momentum buffer ``{"m": torch.zeros_like(x)}``. None by default (an empty dict)."""
        return {}

    def reset(self, state: SolverState) -> None:
        """Start a new run on a state kept from an earlier one, in place (a compiled step or a
        captured CUDA graph refers to its tensors): tensors are zeroed, numbers set to 0."""
        for key, value in state.items():
            if hasattr(value, "zero_"):
                value.zero_()
            elif isinstance(value, int | float) and not isinstance(value, bool):
                state[key] = type(value)(0)

    def step(
        self,
        x: torch.Tensor,
        grad: torch.Tensor,
        state: SolverState,
        *,
        lr: float,
        stage: int,
    ) -> None:
        """Update ``x`` in place (``x.add_``, ``x.copy_``): it is a view of the states being
        inferred, so a new tensor bound to the name ``x`` would move nothing.

        Args:
            x: the free neurons' states, [B, D_free].
            grad: ∂E/∂x at the states of this stage, the same shape; read only.
            state: what :meth:`init_state` returned, for this run.
            lr: γ, the neuron learning rate (the ODE solvers' step size).
            stage: 0 … ``stages`` − 1 within the inference step.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement step()")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class GradientDescent(Solver):
    """x ← x − γ g: gradient descent on the energy (the paper's neuron update), which is also
    the explicit Euler method for dx/dt = −∂E/∂x.

    The engine's fused fast paths (the gradient step inside the message pass, stepping only
    the nodes the error front has reached) compute this update exactly; they are taken for
    this class only, never for a subclass (:func:`is_gradient_descent`)."""

    compilable = True
    rests_at_zero_gradient = True

    def step(
        self, x: torch.Tensor, grad: torch.Tensor, state: SolverState, *, lr: float, stage: int
    ) -> None:
        x.add_(grad, alpha=-lr)


class Momentum(Solver):
    """Heavy-ball momentum, m ← μ m + g, x ← x − γ m (torch's ``SGD(momentum=μ)``).

    Args:
        momentum: μ, in [0, 1).
    """

    compilable = True
    rests_at_zero_gradient = True

    def __init__(self, momentum: float = 0.9) -> None:
        self.momentum = momentum

    def init_state(self, x: torch.Tensor) -> SolverState:
        return {"m": _zeros_like(x)}

    def step(
        self, x: torch.Tensor, grad: torch.Tensor, state: SolverState, *, lr: float, stage: int
    ) -> None:
        m = state["m"]
        m.mul_(self.momentum).add_(grad)
        x.add_(m, alpha=-lr)

    def __repr__(self) -> str:
        return f"Momentum(momentum={self.momentum})"


class Adam(Solver):
    """Adam with bias correction (torch's ``Adam``): m ← β₁ m + (1 − β₁) g,
    v ← β₂ v + (1 − β₂) g², x ← x − γ (m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + ε).

    Args:
        betas: (β₁, β₂).
        eps: ε.
    """

    rests_at_zero_gradient = True

    def __init__(self, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.betas, self.eps = betas, eps

    def init_state(self, x: torch.Tensor) -> SolverState:
        return {"m": _zeros_like(x), "v": _zeros_like(x), "t": 0}

    def step(
        self, x: torch.Tensor, grad: torch.Tensor, state: SolverState, *, lr: float, stage: int
    ) -> None:
        m, v = state["m"], state["v"]
        state["t"] = t = state["t"] + 1
        b1, b2 = self.betas
        m.lerp_(grad, 1 - b1)
        v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        denom = (v / (1 - b2**t)).sqrt_().add_(self.eps)
        x.addcdiv_(m, denom, value=-lr / (1 - b1**t))

    def __repr__(self) -> str:
        return f"Adam(betas={self.betas}, eps={self.eps})"


class Heun(Solver):
    """Heun's method for dx/dt = −∂E/∂x: x̃ = x − γ g(x) (stage 0), then
    x ← x̃ + γ/2 (g(x) − g(x̃)) = x − γ/2 (g(x) + g(x̃)) (stage 1). Second order in γ."""

    stages = 2

    def init_state(self, x: torch.Tensor) -> SolverState:
        return {"g_first": _zeros_like(x)}

    def step(
        self, x: torch.Tensor, grad: torch.Tensor, state: SolverState, *, lr: float, stage: int
    ) -> None:
        g_first = state["g_first"]
        if stage == 0:  # the Euler predictor; g(x) kept for the corrector
            g_first.copy_(grad)
            x.add_(grad, alpha=-lr)
        else:
            x.add_(g_first, alpha=lr / 2).add_(grad, alpha=-lr / 2)


def _zeros_like(x: torch.Tensor) -> torch.Tensor:
    import torch  # here, so that importing the registry needs no torch

    return torch.zeros_like(x)


SOLVERS: Registry[Solver] = Registry("neuron solver")


def register_solver(name: str, solver: Solver | type[Solver], *, replace: bool = False) -> Solver:
    """Register a neuron solver under ``name``, for ``PCLearner(neuron_optimizer=name)``,
    ``solve_inference(optimizer=name)`` and ``pcgraph train --neuron-optimizer name``.

    Args:
        name: the name (normalised like every registry name: lower case, ``-`` → ``_``).
        solver: a :class:`Solver` instance, or a subclass that takes no arguments.
        replace: put ``solver`` in place of one already registered under ``name``.

    Returns:
        the registered instance.

    Raises:
        SpecError: ``solver`` is not a Solver, does not define :meth:`Solver.step`, declares
            no valid ``stages``, or ``name`` is taken (and ``replace`` is off).
    """
    fix = (
        "subclass pcgraph.Solver and define step(self, x, grad, state, *, lr, stage), which "
        "updates x in place"
    )
    if isinstance(solver, type):
        cls = solver
        if not issubclass(cls, Solver):
            raise SpecError(f"neuron solver {name!r}: {cls.__name__} is not a Solver; {fix}")
        try:
            solver = cls()
        except TypeError as exc:
            raise SpecError(
                f"neuron solver {name!r}: {cls.__name__}() cannot be built without arguments "
                f"({exc}); pass an instance, e.g. {cls.__name__}(...)"
            ) from None
    if not isinstance(solver, Solver):
        raise SpecError(f"neuron solver {name!r}: got {type(solver).__name__}, not a Solver; {fix}")
    if type(solver).step is Solver.step:
        raise SpecError(
            f"neuron solver {name!r}: {type(solver).__name__} does not define step(); {fix}"
        )
    try:  # the engine calls step(x, grad, state, lr=γ, stage=s): refuse another signature now
        inspect.signature(solver.step).bind(None, None, {}, lr=0.1, stage=0)
    except TypeError as exc:
        raise SpecError(
            f"neuron solver {name!r}: {type(solver).__name__}.step cannot be called as "
            f"step(x, grad, state, *, lr, stage) ({exc}); {fix}"
        ) from None
    stages = solver.stages
    if isinstance(stages, bool) or not isinstance(stages, int) or stages < 1:
        raise SpecError(
            f"neuron solver {name!r}: stages (gradient evaluations per step) must be a whole "
            f"number ≥ 1, got {stages!r}"
        )
    return SOLVERS.register(name, solver, replace=replace)


def get_solver(name: object, *, what: str = "neuron_optimizer") -> tuple[str, Solver]:
    """The canonical name and the solver registered as ``name``.

    Raises:
        ConfigError: naming ``what`` (the argument or option), the valid names and the fix.
    """
    if not isinstance(name, str) or name not in SOLVERS:
        raise ConfigError(
            f"{what} {name!r} is not one of: {', '.join(SOLVERS.names())} (a solver of your "
            "own is registered with pcgraph.register_solver; on the command line, by a "
            "--plugin MODULE)"
        )
    key = SOLVERS.canonical(name)
    return key, SOLVERS.get(key)


def is_gradient_descent(solver: Solver) -> bool:
    """Whether ``solver`` is the built-in x ← x − γ g (sgd, euler), which the engine's fused
    fast paths compute exactly; a subclass, whatever it does, is not."""
    return type(solver) is GradientDescent


SOLVERS.register("sgd", GradientDescent())
SOLVERS.register("euler", GradientDescent())
SOLVERS.register("momentum", Momentum())
SOLVERS.register("adam", Adam())
SOLVERS.register("heun", Heun())
