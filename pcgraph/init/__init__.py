"""Neuron initializations (paper §3): one protocol, one registry.

``make_initializer("hybrid", K=2)`` or ``make_initializer("auto")``; see :data:`INITIALIZERS`.
"""

from __future__ import annotations

from typing import Any

import torch

from pcgraph.analysis import check_forward_init, evaluation_clamp
from pcgraph.compiler.bound import Sweep
from pcgraph.compiler.network import PCNetwork
from pcgraph.errors import InitError
from pcgraph.init.average import AverageInit, HybridInit
from pcgraph.init.base import InitContext, Initializer, forward_order
from pcgraph.init.memory import HopfieldMemory, MemoryInit
from pcgraph.init.simple import ForwardInit, NullInit, RandomInit, ZeroInit
from pcgraph.registry import Registry

__all__ = [
    "INITIALIZERS",
    "AutoInit",
    "AverageInit",
    "ForwardInit",
    "HopfieldMemory",
    "HybridInit",
    "InitContext",
    "Initializer",
    "MemoryInit",
    "NullInit",
    "RandomInit",
    "ZeroInit",
    "forward_order",
    "make_initializer",
]


class AutoInit(Initializer):
    """Forward init where Proposition 3.2 allows it under the current clamp set, memory otherwise.

    Per clamp set: training and evaluation each use forward init where it is possible there;
    where it is not, the memory trained under the training clamp set (reading the nodes clamped
    in both). Under a clamp set no memory was trained for (a query that forward init cannot
    serve), :meth:`init` raises :class:`InitError` naming it and the fix.

    Args:
        memory: options for the memory initializer it falls back to.
    """

    name = "auto"

    def __init__(self, **memory: Any) -> None:
        self.forward = ForwardInit()
        self.memory = MemoryInit(**memory)

    def choose(self, ctx: InitContext) -> Initializer:
        """The initializer used under ``ctx.clamp``."""
        return self.forward if ctx.forward_check[0] else self.memory

    def prepare(self, net: PCNetwork, clamp: frozenset[str]) -> None:
        """Prepare the memory where training or evaluation cannot use forward init."""
        evaluation = evaluation_clamp(net.graph, clamp)
        if not all(check_forward_init(net.graph, c)[0] for c in (clamp, evaluation)):
            self.memory.prepare(net, clamp)

    def init(self, x: torch.Tensor, ctx: InitContext) -> Sweep | None:
        chosen = self.choose(ctx)
        try:
            return chosen.init(x, ctx)
        except InitError as exc:
            if chosen is not self.memory:
                raise
            raise InitError(
                f"init 'auto' uses a memory under clamp set {{{', '.join(sorted(ctx.clamp))}}} "
                f"because {ctx.forward_check[1]}; {exc}"
            ) from None

    def observe(self, x_final: torch.Tensor, ctx: InitContext) -> None:
        self.choose(ctx).observe(x_final, ctx)

    def smm(self, ctx: InitContext) -> int:
        return self.choose(ctx).smm(ctx)

    def extra_parameters(self) -> int:
        return self.memory.extra_parameters()

    def reset(self) -> None:
        self.memory.reset()

    def state_dict(self) -> dict[str, object]:
        return {"memory": self.memory.state_dict()}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Its memory's state: ``{"memory": …}`` as :meth:`state_dict` writes it, or the state of
        a ``memory`` initializer itself (a run trained with ``init="memory"``)."""
        memory = state.get("memory")
        if isinstance(memory, dict):
            self.memory.load_state_dict(memory)
        elif state:
            self.memory.load_state_dict(state)


INITIALIZERS: Registry[type[Initializer]] = Registry("initialization")
for _cls in (
    ZeroInit,
    RandomInit,
    NullInit,
    ForwardInit,
    AverageInit,
    HybridInit,
    MemoryInit,
    AutoInit,
):
    INITIALIZERS.register(_cls.name, _cls)


def make_initializer(name: str | Initializer, **options: Any) -> Initializer:
    """Build an initializer by name with its options (e.g. ``hybrid``, ``K=2``).

    Raises:
        SpecError: unknown name (listing the choices); InitError: options it does not take.
    """
    if isinstance(name, Initializer):
        return name
    cls = INITIALIZERS.get(name)
    try:
        return cls(**options)
    except TypeError as exc:
        raise InitError(f"initialization {cls.name!r}: {exc}; see help({cls.__name__})") from None
