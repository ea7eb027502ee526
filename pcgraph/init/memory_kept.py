"""The memory initialization's training graph kept from ``init`` to ``observe`` (a fast path).

In training, :meth:`MemoryInit.init` computes x(0) = S(m(o)) and :meth:`MemoryInit.observe`
takes the memory's loss at x(0) = S(m(o)) again, with the same observations, memories and
weights (the learner observes before its weight step). The fast path computes x(0) once, with
autograd recording, and the loss reuses it; the plain reference (``MemoryInit.init`` under
``no_grad``, then :meth:`MemoryInit.initial_states` again in ``observe``) is the only code
that runs while :func:`pcgraph.fast_paths` is off. The kept x(0) is used only where it is the
reference's: no parameter of the network or the memories changed in between (their in-place
version counters are unchanged, so not under the incremental schedule, whose weights move at
every step) and every free node is a target or below one (so x(0) does not read the inferred
states).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain

import torch

from pcgraph import fast
from pcgraph.compiler.network import PCNetwork
from pcgraph.init.base import InitContext
from pcgraph.init.hopfield import MemoryBank

__all__ = ["KeptInit", "covers_free", "keeps_graph", "parameter_versions"]


def parameter_versions(net: PCNetwork, bank: MemoryBank) -> tuple[int, ...]:
    """The in-place version counters of the network's and the bank's parameters: any step of
    an optimizer (or a fit) on them changes this tuple."""
    params = chain(net.parameters(), bank.memories.parameters())
    return tuple(p._version for p in params)


def covers_free(ctx: InitContext, targets: list[str], order: list[int]) -> bool:
    """Whether every free node is a memory target or in the forward sweep below them, so that
    x(0) = S(m(o)) reads nothing of the states but the clamped data."""
    net = ctx.net
    set_by_init = set(targets) | {net.nodes[i].name for i in order}
    return all(n.name in set_by_init for n in net.nodes if n.name not in ctx.clamp)


def keeps_graph(
    ctx: InitContext, steps: int, fitted: set[str], targets: list[str], order: list[int]
) -> bool:
    """Whether ``init`` keeps x(0)'s graph for ``observe``: in training with the fast paths
    on, a gradient step to take, every target retrieved (fitted) and every free node set by
    the initializer (:func:`covers_free`)."""
    return (
        ctx.train
        and fast.enabled()
        and steps > 0
        and bool(targets)
        and fitted >= set(targets)
        and covers_free(ctx, targets, order)
    )


@dataclass
class KeptInit:
    """x(0) with its autograd graph, the observations it read, the clamp set and the
    parameter versions at the time (see the module docstring)."""

    x0: torch.Tensor
    o: torch.Tensor
    clamp: frozenset[str]
    versions: tuple[int, ...]

    def usable(self, net: PCNetwork, bank: MemoryBank, clamp: frozenset[str]) -> bool:
        """Whether the loss at this x(0) is the reference's at this point."""
        return clamp == self.clamp and parameter_versions(net, bank) == self.versions
