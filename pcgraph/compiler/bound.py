"""A program bound to its operands (:class:`BoundProgram`), and what a forward sweep hands to
the inference after it (:class:`Sweep`).

:meth:`ProgramBase.bind <pcgraph.compiler.program_base.ProgramBase.bind>` returns a new
:class:`BoundProgram` for one state tensor, the buffers of its batch size, the parameters'
storage and the switch of the fast paths. Nothing in it is ever rebound: when any of the four
changes, the program binds a new one, so no part of it can go stale on its own. What it builds
on first use (the fixed predictions' steps, a sweep per order, …) lives in its
:class:`Derived`, derived from these operands alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from pcgraph.compiler.gradient import GradientSteps
from pcgraph.compiler.protocol import Buffers
from pcgraph.compiler.recipes import ErrorRecipe
from pcgraph.compiler.steps import Step

__all__ = ["BoundProgram", "Derived", "FixedParts", "Sweep", "SweepPlan"]


@dataclass(frozen=True)
class FixedParts:
    """What does not change during one batch's inference, as steps run once per batch.

    Attributes:
        steps: σ(x_j) of the clamped senders, the products of the clamped parents (and a
            learned precision's w = exp(s) into its block of the precisions).
        sent: σ(x_j) of each clamped sender.
        const: each predicted node's fixed part of μ (None: none).
    """

    steps: list[Step]
    sent: dict[int, torch.Tensor]
    const: dict[int, torch.Tensor | None]


@dataclass(frozen=True)
class SweepPlan:
    """A forward sweep over one order, bound to the program's views.

    Attributes:
        steps: x_i = μ_i in order, with σ(x) of each sender computed once.
        swept: the nodes it leaves at ε = 0 exactly.
        write: the swept states into x; returns whether they are all finite (None: unknown).
    """

    steps: list[Step]
    swept: frozenset[int]
    write: Callable[[], bool | None]


@dataclass
class Derived:
    """What a :class:`BoundProgram` builds on first use, each from the bound operands alone
    (so it is valid exactly as long as the bound program is)."""

    consts: FixedParts | None = None
    sweeps: dict[tuple[int, ...], SweepPlan] = field(default_factory=dict)  # per order
    # (states, ∂E/∂x) ranges a plain step moves, per (quiet set, fused SGD γ)
    parts: dict[tuple[object, ...], list[tuple[torch.Tensor, torch.Tensor]]] = field(
        default_factory=dict
    )
    energy: dict[frozenset[int], object] = field(default_factory=dict)  # per skipped set
    # per node, μ kept from a forward sweep for the evaluations that read it as Quiet.stale
    kept_mu: dict[int, torch.Tensor] = field(default_factory=dict)
    grad_steps: dict[frozenset[int], list[Callable[[], bool | None]]] = field(
        default_factory=dict
    )  # ∂E/∂θ steps per quiet set (dropped when a ``.grad`` tensor is replaced)


@dataclass(frozen=True, eq=False)
class BoundProgram:
    """One inference program's views and steps over one set of operands.

    Attributes:
        key: the operands it is bound to: x's storage, shape and strides, the buffers, the
            switch of the fast paths and the parameters' storage.
        buf: the buffers of x's batch size.
        xv, ev, dv, gv: per node, its states (a free node's block of the working states), ε,
            δ and ∂E/∂x.
        sent_views: per node, where its σ(x) is (its states for the identity).
        x_cols, x_blocks: the free nodes' columns of x and their working-state blocks.
        free_x: the free nodes' working states as one range (None: not one range).
        target: (states, ∂E/∂x) that one neuron step moves.
        load, store: the free nodes' columns of x into the working states, and back.
        sent_steps: σ(x_j) into the σ buffer, per free sender.
        error_steps: per predicted node, its recipe and its bound ε step (None: the general
            path).
        gradient_steps: ∂E/∂x of the free nodes.
        smu, smsg: per node, its block of the stacked predictions and messages (no stacks:
            None).
        derived: what is built on first use from the above.
    """

    key: tuple[object, ...]
    buf: Buffers
    x_ptr: int
    xv: list[torch.Tensor]
    ev: list[torch.Tensor]
    dv: list[torch.Tensor]
    gv: list[torch.Tensor]
    sent_views: dict[int, torch.Tensor]
    x_cols: list[torch.Tensor]
    x_blocks: list[torch.Tensor]
    free_x: torch.Tensor | None
    target: tuple[torch.Tensor, torch.Tensor]
    load: Step | None
    store: Callable[[], bool | None] | None
    sent_steps: dict[int, Step]
    error_steps: list[tuple[ErrorRecipe, Step | None]]
    gradient_steps: GradientSteps
    smu: list[torch.Tensor] | None
    smsg: list[torch.Tensor] | None
    derived: Derived = field(default_factory=Derived)


@dataclass(frozen=True, eq=False)
class Sweep:
    """What :meth:`Program.forward_sweep` hands to the inference that follows it.

    Inference started with it (``prepare(x, sweep=…)``) reuses the sweep's fixed predictions
    and working states, and skips the errors it left at exactly 0, while it still holds: the
    same bound program, and neither x nor a parameter written in place since (``token``, the
    tensors' versions). A write that bumps no version (``.data``, NumPy, a C pointer) after the
    sweep is not seen: only callers that know nothing ran in between pass it on
    (:class:`~pcgraph.engine.learning.PCLearner` does: init, then inference).

    Attributes:
        bound: the bound program the sweep ran on.
        token: x's storage and version, the buffers, and the parameters' versions, after it.
        nodes: the swept nodes left at ε = 0 with σ(x) current (empty after a non-finite
            state: NaN − NaN is not 0).
    """

    bound: BoundProgram
    token: tuple[object, ...]
    nodes: frozenset[int]
