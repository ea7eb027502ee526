"""The neuron optimizers of inference: x ← x − γ g (SGD, the paper's), momentum and Adam, and
the ODE solvers of inference dx/dt = −∂E/∂x: explicit Euler (the same update as SGD, named as a
solver) and Heun's second-order method (one Euler predictor, then the average of the two
gradients; run by the eager loop, :func:`pcgraph.engine.loop.eager_loop`)."""

from __future__ import annotations

from typing import Literal

import torch

from pcgraph.errors import ConfigError

__all__ = ["TWO_STAGE", "NeuronOptimizer", "NeuronStep"]

NeuronOptimizer = Literal["sgd", "momentum", "adam", "euler", "heun"]
# the ones whose update needs a second gradient evaluation per step
TWO_STAGE = frozenset({"heun"})


class NeuronStep:
    """x ← x − γ g (SGD), with momentum or Adam as options; state reset per minibatch."""

    def __init__(
        self,
        kind: str,
        lr: float,
        x: torch.Tensor,
        momentum: float = 0.9,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        if kind not in ("sgd", "momentum", "adam", "euler", "heun"):
            raise ConfigError(
                f"unknown neuron optimizer {kind!r}; valid: sgd, momentum, adam, euler, heun"
            )
        if not lr > 0:
            raise ConfigError(f"the neuron learning rate γ must be > 0, got {lr}")
        self.kind, self.lr, self.momentum, self.betas, self.eps = kind, lr, momentum, betas, eps
        self.t = 0
        self.m: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        if kind in ("momentum", "adam"):
            self.m = torch.zeros_like(x)
        if kind == "adam":
            self.v = torch.zeros_like(x)

    def reset(self) -> None:
        """Start a new minibatch (zero the optimizer state, in place)."""
        self.t = 0
        if self.m is not None:
            self.m.zero_()
        if self.v is not None:
            self.v.zero_()

    def __call__(self, x: torch.Tensor, grad: torch.Tensor) -> None:
        if self.kind in ("sgd", "euler", "heun"):  # heun: the loop adds its corrector
            x.add_(grad, alpha=-self.lr)
            return
        if self.m is not None and self.m.shape != x.shape:  # stepping a column range of x
            self.m = torch.zeros_like(x)
            self.v = torch.zeros_like(x) if self.v is not None else None
        m = self.m
        assert m is not None
        if self.kind == "momentum":
            m.mul_(self.momentum).add_(grad)
            x.add_(m, alpha=-self.lr)
            return
        v = self.v
        assert v is not None
        self.t += 1
        b1, b2 = self.betas
        m.lerp_(grad, 1 - b1)
        v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        denom = (v / (1 - b2**self.t)).sqrt_().add_(self.eps)
        x.addcdiv_(m, denom, value=-self.lr / (1 - b1**self.t))
