"""The initializer protocol: set x_i(t=0) of every free node for a new minibatch, then learn
from the converged states x(T) after inference (``observe``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from pcgraph.analysis import init_smm
from pcgraph.compiler.bound import Sweep
from pcgraph.compiler.network import PCNetwork
from pcgraph.compiler.plan import ClampPlan, clamp_plan, forward_order
from pcgraph.distributed import DistContext
from pcgraph.errors import InitError

__all__ = ["InitContext", "Initializer", "forward_order"]


@dataclass
class InitContext:
    """What an initializer may look at for one minibatch.

    Attributes:
        net: the compiled network.
        clamp: the clamp set; clamped nodes already hold their data in ``x``.
        labels: class labels [B] (int64) when known (training with labels), else None.
        train: True during training (initializers may use labels), False when evaluating.
        generator: explicit randomness for stochastic initializers.
        dist: the data-parallel job this rank belongs to (None: a single process); states
            learned from minibatches (class means, memories) are reduced over it.
        plan: the network's :class:`~pcgraph.compiler.plan.ClampPlan` for ``clamp`` (free
            nodes and columns, Prop. 3.2, memory targets, forward orders), built once.
    """

    net: PCNetwork
    clamp: frozenset[str]
    labels: torch.Tensor | None = None
    train: bool = True
    generator: torch.Generator | None = None
    dist: DistContext | None = None
    plan: ClampPlan = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.plan = clamp_plan(self.net, self.clamp)

    @property
    def free(self) -> list[int]:
        """Indices of the free nodes."""
        return list(self.plan.free)

    @property
    def forward_check(self) -> tuple[bool, str]:
        """Proposition 3.2 under this clamp set: (possible, reason)."""
        return self.plan.forward_possible, self.plan.forward_reason

    @property
    def free_cols(self) -> torch.Tensor:
        """Boolean mask [D] of the free columns of the flat state."""
        return self.plan.free_cols


class Initializer:
    """Base class of the neuron initializations (paper §3). Subclasses implement :meth:`init`.

    ``init`` writes the free nodes of the flat state ``x`` in place; ``observe`` sees the states
    after inference; ``smm`` is the sequential-matmul cost of ``init``; ``prepare`` is told the
    training clamp set once, before any minibatch.
    """

    name: str = "base"

    def init(self, x: torch.Tensor, ctx: InitContext) -> Sweep | None:  # pragma: no cover
        """Set x_i(0) for every free node of the minibatch. An initializer that ran the
        program's forward sweep last returns what it returned (the inference after it then
        reuses its work); any other returns None."""
        raise NotImplementedError

    def prepare(self, net: PCNetwork, clamp: frozenset[str]) -> None:
        """Declare the training clamp set before any minibatch (:class:`PCLearner` calls it once):
        an initializer that learns per clamp set checks its options against it here.

        Raises:
            InitError: options this network and clamp set cannot use, naming the fix.
        """

    def observe(self, x_final: torch.Tensor, ctx: InitContext) -> None:
        """Learn from one minibatch's converged states x(T) (after inference)."""

    def smm(self, ctx: InitContext) -> int:
        """Sequential matrix multiplications :meth:`init` costs."""
        return init_smm(ctx.net.graph, ctx.clamp, self.name)

    def require_forward(self, ctx: InitContext) -> None:
        """Raise :class:`InitError` with Prop. 3.2's reason when forward init is impossible."""
        ok, reason = ctx.forward_check
        if not ok:
            raise InitError(f"initialization {self.name!r} cannot be used here: {reason}")

    def reset(self) -> None:
        """Forget everything learned (a new run)."""

    def state_dict(self) -> dict[str, object]:
        """Tensors and numbers to checkpoint."""
        return {}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore from :meth:`state_dict`."""

    def extra_parameters(self) -> int:
        """Learnable scalars the initializer adds (memory layers); 0 for the others."""
        return 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
