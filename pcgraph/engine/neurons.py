"""One inference run's neuron update: a registered solver (:mod:`pcgraph.solvers`) bound to its
state and to γ. The loops call it once per stage of every step (:func:`pcgraph.engine.loop.
eager_loop`); what a solver computes, and how many gradient evaluations a step takes, is the
solver's."""

from __future__ import annotations

import torch

from pcgraph.errors import ConfigError
from pcgraph.solvers import NeuronOptimizer, get_solver, is_gradient_descent

__all__ = ["NeuronOptimizer", "NeuronStep"]


class NeuronStep:
    """The solver registered as ``name``, with its state for the states ``x`` and γ; the
    state is reset per minibatch (:meth:`reset`).

    Args:
        name: a name in :data:`pcgraph.solvers.SOLVERS`.
        lr: γ (> 0); the backtracking step rule halves it within a run.
        x: the states the solver steps (its state is remade when it steps another shape).
        check_in_place: on the first call, raise if the solver left ``x`` untouched (a step
            that rebinds ``x`` instead of writing into it). Off inside ``torch.compile``.
    """

    def __init__(
        self, name: str, lr: float, x: torch.Tensor, *, check_in_place: bool = True
    ) -> None:
        self.name, self.solver = get_solver(name, what="neuron optimizer")
        if not lr > 0:
            raise ConfigError(f"the neuron learning rate γ must be > 0, got {lr}")
        self.lr = lr
        self.state = self.solver.init_state(x)
        self._shape = x.shape
        self._check = check_in_place

    @property
    def stages(self) -> int:
        """Gradient evaluations per inference step."""
        return self.solver.stages

    @property
    def plain(self) -> bool:
        """x ← x − γ g exactly (sgd, euler): the update the engine's fused paths compute."""
        return is_gradient_descent(self.solver)

    def reset(self) -> None:
        """Start a new minibatch (the solver's state reset in place)."""
        self.solver.reset(self.state)

    def __call__(self, x: torch.Tensor, grad: torch.Tensor, stage: int = 0) -> None:
        if x.shape != self._shape:  # the free states are narrower than the buffer made with
            self.state, self._shape = self.solver.init_state(x), x.shape
        # checked at the last stage of the first step: an earlier stage may only record
        if not self._check or x.is_inference() or stage != self.solver.stages - 1:
            self.solver.step(x, grad, self.state, lr=self.lr, stage=stage)
            return
        before = x._version
        self.solver.step(x, grad, self.state, lr=self.lr, stage=stage)
        if x._version == before:
            raise ConfigError(
                f"neuron solver {self.name!r} ({type(self.solver).__name__}) did not write "
                "into x: its step must update the states in place (x.add_(...), "
                "x.copy_(...)); assigning to x moves nothing"
            )
        self._check = False
