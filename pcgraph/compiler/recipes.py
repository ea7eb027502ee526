"""The per-node recipes of one inference step, decided once per (network, clamp set) by
:class:`~pcgraph.compiler.step_plan.StepPlan` and walked by the program each step: frozen
records with named fields, not positional tuples."""

from __future__ import annotations

from dataclasses import dataclass

from pcgraph.activations import Activation
from pcgraph.ops.kernel import EdgeKernel

__all__ = ["Edge", "ErrorRecipe", "GradRecipe"]

Edge = tuple[EdgeKernel, int]
"""An edge as (its kernel, the node at its other end)."""


@dataclass(frozen=True, eq=False)
class ErrorRecipe:
    """How node ``node``'s error ε (and δ) is computed each step.

    Attributes:
        node: the node with a prediction.
        parents: (kernel, source) of the edges from free nodes that are not stacked: their part
            of μ changes every step (the clamped parents' part is fixed per batch).
        custom: the node's energy is not the gaussian: ε and E are asked of its ``Energy``.
        stacked_in: some edges into the node are stacked (their part of μ is summed apart).
    """

    node: int
    parents: tuple[Edge, ...]
    custom: bool
    stacked_in: bool


@dataclass(frozen=True, eq=False)
class GradRecipe:
    """How free node ``node``'s ∂E/∂x = own − σ'(x) ⊙ Σ_c J_fᵀ δ_c is computed each step.

    Attributes:
        node: the free node.
        has_own: it has a prediction and is not held, so its own δ enters ∂E/∂x.
        children: (kernel, target) of the edges to its children that are not stacked.
        activation: σ of the node (None for the identity).
        stacked_out: some edges out of the node are stacked (their messages summed apart).
        fresh: its whole message is one plain linear edge's δ W, a new tensor that σ' and the
            subtraction can work on in place.
    """

    node: int
    has_own: bool
    children: tuple[Edge, ...]
    activation: Activation | None
    stacked_out: bool
    fresh: bool
