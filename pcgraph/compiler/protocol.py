"""The seam between the compiler and the engine: a program's buffers and its protocol.

Every backend's program (:mod:`pcgraph.compiler.backends`) implements :class:`Program` over
:class:`Buffers`; the engine's runners and the initializers use nothing else of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import torch

if TYPE_CHECKING:
    from pcgraph.compiler.bound import Sweep

__all__ = ["Buffers", "Program", "Quiet", "Sent"]

#: σ(x_j) of the free senders, by node index: what :meth:`Program.errors` returns
Sent = dict[int, torch.Tensor]


@dataclass(frozen=True)
class Quiet:
    """What one error evaluation may skip (see :meth:`ClampPlan.quiet_schedule`).

    Attributes:
        zero: nodes whose ε is exactly 0: no prediction, no message to their parents, no weight
            gradient on their in-edges.
        fresh: free nodes whose σ(x) in the σ buffer is current (not moved since computed).
        stale: swept nodes that have moved while none of their parents has: μ is still the
            sweep's, kept at an earlier evaluation (``stash``), so ε = x − μ needs no product.
        stash: nodes of ``zero`` (x = μ exactly) whose μ a later evaluation reads as ``stale``:
            their states are kept before the next step moves them.
    """

    zero: frozenset[int]
    fresh: frozenset[int]
    stale: frozenset[int] = frozenset()
    stash: frozenset[int] = frozenset()


@dataclass
class Buffers:
    """The reused tensors of one batch size.

    In the dense backend ε, δ, σ(x), ∂E/∂x and the working states are *node-blocked*: one
    storage of B·D numbers in which node i owns the contiguous block [B, size_i] at B·offset_i,
    so that every operand of a matrix product and of an element-wise step is contiguous (a
    node's columns of the [B, D] state are rows far apart; oneDNN copies strided operands
    first, see :mod:`pcgraph.ops.matmul`). The free nodes form one range of columns in the
    usual layout, so their blocks form one range too, and one kernel updates all of them. The
    sparse backend keeps every buffer in the state's own [B, D] layout.
    """

    eps: torch.Tensor  # [B·D] prediction errors ε, node-blocked (0 for nodes without parents)
    delta: torch.Tensor  # [B·D] error signals δ = w ε (the same tensor when all w = 1)
    # ∂E/∂x in the layout of ``states`` ([B, D] where that is None), written on the free nodes
    # only (clamped stay 0); a plain SGD inference from a forward sweep leaves the blocks of
    # nodes its error front has not reached unwritten
    grad: torch.Tensor
    # [B·D] node-blocked working copy of the free nodes' states: between Program.prepare and
    # Program.store the steps read and move these, not x's columns (None: they move x itself)
    states: torch.Tensor | None = None
    const: dict[int, torch.Tensor | None] = field(default_factory=dict)  # fixed part of μ_i
    sent_buf: torch.Tensor | None = None  # [B·D] σ(x_j) of the free senders, node-blocked
    precision: torch.Tensor | None = None  # [B·D] w_i per entry (non-unit precisions only)
    node_of: torch.Tensor | None = None  # [B·D] node index per entry (energies of many nodes)
    sent: dict[int, torch.Tensor] = field(default_factory=dict)  # σ(x_j) of clamped sources
    sent_free: dict[int, torch.Tensor] = field(default_factory=dict)  # σ(x_j), free senders
    ce_mu: dict[int, torch.Tensor] = field(default_factory=dict)  # μ of CE nodes (energies)
    stacked_mu: torch.Tensor | None = None  # [B, D] predictions of stacked edges
    stacked_msg: torch.Tensor | None = None  # [B, D] messages of stacked edges
    # nodes whose ε block is exactly 0 since the last errors() call (a forward sweep's front)
    quiet: frozenset[int] = frozenset()
    # tensors a backend keeps with these buffers (fixed predictions, copies of clamped σ(x))
    store: dict[tuple[str, int], torch.Tensor] = field(default_factory=dict)


class Program(Protocol):
    """What the engine and the initializers use of a backend's inference program (one per
    network and clamp set; :func:`pcgraph.compiler.program_for` builds and caches it)."""

    clamp: frozenset[str]
    free_mask: torch.Tensor  # [D], 1 on the free columns

    def prepare(self, x: torch.Tensor, *, sweep: Sweep | None = None) -> Buffers:
        """Start of a batch on the state buffer x: the reused buffers, fixed predictions, and
        the free nodes' states read from x into ``buf.states`` where the backend keeps a
        working copy. From here until :meth:`store` the steps move that copy: x's free
        columns are read again only by the next prepare. ``sweep``: what
        :meth:`forward_sweep` returned for x just before, whose work is reused while it holds
        (a backend may ignore it)."""
        ...

    def store(self, x: torch.Tensor, buf: Buffers) -> None:
        """Write the working states back into x's free columns (end of inference; nothing to
        do for a backend that moves x itself)."""
        ...

    def step_target(self, x: torch.Tensor, buf: Buffers) -> tuple[torch.Tensor, torch.Tensor]:
        """(states, ∂E/∂x) that one neuron-optimizer step moves element-wise, in the same
        layout: every free node (and clamped ones, at ∂E/∂x = 0, where the free nodes are not
        one range)."""
        ...

    def set_state_grad(self, buf: Buffers, g: torch.Tensor) -> None:
        """∂E/∂x given in the state's [B, D] layout (autograd's) into ``buf.grad``, on the
        free nodes only."""
        ...

    def forward_sweep(self, x: torch.Tensor, order: list[int]) -> Sweep | None:
        """Forward initialization x_i = μ_i of the nodes in ``order``; returns what the
        inference after it may reuse (None: nothing)."""
        ...

    def swept(self, x: torch.Tensor, buf: Buffers, sweep: Sweep | None) -> frozenset[int]:
        """The nodes ``sweep`` left at ε = 0, while it holds for x and the weights (empty
        otherwise, and for a backend that computes every error each step)."""
        ...

    def bound_state(self) -> object:
        """Everything the current bound steps refer to (the bound program: closures, scratch
        tensors): a captured CUDA graph keeps it, so that no tensor it replays on is freed
        when the program is bound to other buffers."""
        ...

    def errors(self, x: torch.Tensor, buf: Buffers, quiet: Quiet | None = None) -> Sent:
        """ε and δ at the current states; returns σ(x) of the free senders.

        ``quiet``: the nodes known to be at ε = 0 (recorded in ``buf.quiet``) and those whose
        σ(x) is current, from the error front. A backend may ignore it.
        """
        ...

    def state_grad(
        self, x: torch.Tensor, buf: Buffers, sent: Sent, *, sgd_lr: float | None = None
    ) -> None:
        """∂E/∂x of the free nodes into ``buf.grad`` (no messages from ``buf.quiet``).

        ``sgd_lr``: the caller takes a plain gradient step with this γ and steps only
        :meth:`update_parts`; the backend may leave the gradient of nodes at ∂E/∂x = 0
        unwritten, and take a node's whole step here and leave it out of those parts.
        """
        ...

    def update_parts(
        self, x: torch.Tensor, buf: Buffers, *, sgd_lr: float | None = None
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(states, ∂E/∂x) ranges, like :meth:`step_target`'s, that hold every free node with a
        gradient that may be non-zero at the last errors and that :meth:`state_grad` with the
        same ``sgd_lr`` did not step itself (all free nodes, for a backend that skips
        nothing)."""
        ...

    def node_energies(
        self, buf: Buffers, out: torch.Tensor | None = None, *, zero: frozenset[int] = frozenset()
    ) -> torch.Tensor:
        """Per-node energies [N] at the last errors (``zero``: nodes known at ε = 0)."""
        ...

    def param_grads(self, x: torch.Tensor, buf: Buffers, *, accumulate: bool = True) -> None:
        """∂E/∂θ into every parameter's ``.grad``."""
        ...
