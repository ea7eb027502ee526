"""The uninformed and the structural initializations: zero, random, forward, null."""

from __future__ import annotations

import math

import torch

from pcgraph.analysis import init_smm
from pcgraph.compiler.backends import program_for
from pcgraph.compiler.bound import Sweep
from pcgraph.errors import ConfigError
from pcgraph.init.base import InitContext, Initializer

__all__ = ["ForwardInit", "NullInit", "RandomInit", "ZeroInit"]


class ZeroInit(Initializer):
    """x_i(0) = 0 for every free node."""

    name = "zero"

    def init(self, x: torch.Tensor, ctx: InitContext) -> None:
        x[:, ctx.free_cols] = 0.0


class RandomInit(Initializer):
    """x_i(0) ~ N(mean, std²) independently for every free neuron.

    Args:
        mean, std: of the normal distribution (default N(0, 0.1²)).
    """

    name = "random"

    def __init__(self, *, mean: float = 0.0, std: float = 0.1) -> None:
        if not (math.isfinite(mean) and math.isfinite(std) and std >= 0):
            raise ConfigError(
                f"random init: needs a finite mean and a finite std ≥ 0, got mean={mean}, std={std}"
            )
        self.mean, self.std = mean, std

    def init(self, x: torch.Tensor, ctx: InitContext) -> None:
        cols = ctx.free_cols
        noise = torch.randn(
            x.shape[0],
            int(cols.sum()),
            generator=ctx.generator,
            device="cpu" if ctx.generator is None else ctx.generator.device,
            dtype=x.dtype,
        )
        x[:, cols] = noise.to(x.device) * self.std + self.mean

    def __repr__(self) -> str:
        return f"RandomInit(mean={self.mean}, std={self.std})"


class ForwardInit(Initializer):
    """x_i(0) = μ_i in topological order from the clamped roots (needs Proposition 3.2).

    Args:
        depth: sweep only nodes whose forward level is ≤ depth (the hybrid's K); None = all.
    """

    name = "forward"

    def __init__(self, *, depth: int | None = None) -> None:
        self.depth = depth

    def init(self, x: torch.Tensor, ctx: InitContext) -> Sweep | None:
        self.require_forward(ctx)
        order = ctx.plan.forward_order(max_level=self.depth)
        # through the program: the inference that follows reuses its fixed predictions
        return program_for(ctx.net, ctx.clamp).forward_sweep(x, order)

    def smm(self, ctx: InitContext) -> int:
        return init_smm(
            ctx.net.graph,
            ctx.clamp,
            "forward" if self.depth is None else "hybrid",
            depth=self.depth,
        )

    def __repr__(self) -> str:
        return "ForwardInit()" if self.depth is None else f"ForwardInit(depth={self.depth})"


class NullInit(Initializer):
    """x_i(0, b+1) = x_i(T, b): the last minibatch's converged states.

    The first minibatch, and any minibatch whose size differs from the last one (the states of
    other samples cannot be lined up), use forward init where Proposition 3.2 allows it, zero
    init otherwise. Clamped nodes keep their data.
    """

    name = "null"

    def __init__(self) -> None:
        self.last: torch.Tensor | None = None
        self._cost = 0

    def init(self, x: torch.Tensor, ctx: InitContext) -> Sweep | None:
        cols = ctx.free_cols
        if self.last is not None and self.last.shape == x.shape:
            x[:, cols] = self.last[:, cols]
            self._cost = 0
            return None
        if ctx.forward_check[0]:
            self._cost = init_smm(ctx.net.graph, ctx.clamp, "forward")
            return ForwardInit().init(x, ctx)
        x[:, cols] = 0.0
        self._cost = 0
        return None

    def observe(self, x_final: torch.Tensor, ctx: InitContext) -> None:
        if ctx.train:
            self.last = x_final.detach().clone()

    def smm(self, ctx: InitContext) -> int:
        """What the last :meth:`init` cost: 0 when it carried states, a forward sweep when it
        fell back to one."""
        return self._cost

    def reset(self) -> None:
        self.last = None

    def state_dict(self) -> dict[str, object]:
        return {"last": self.last}

    def load_state_dict(self, state: dict[str, object]) -> None:
        last = state.get("last")
        self.last = last if isinstance(last, torch.Tensor) else None
