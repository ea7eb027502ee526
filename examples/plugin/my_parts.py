"""A plugin of a researcher's own parts, registered through pcgraph's public functions.

Use it from the command line (it is imported before the topology is read):

  pcgraph check examples/plugin/my_net.yaml --plugin examples/plugin/my_parts.py
  pcgraph train examples/plugin/my_net.yaml --plugin examples/plugin/my_parts.py \\
      --neuron-optimizer sign_descent --epochs 1

or from Python: ``import my_parts`` (with this folder on the path) before building the spec.
"""

from __future__ import annotations

import torch
from torch import nn

import pcgraph as pc


class TwoLayer(nn.Module):
    """A small MLP on one edge: two sequential products with a tanh between."""

    def __init__(self, n_in: int, n_out: int, hidden: int) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(n_in, hidden), nn.Linear(hidden, n_out)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.b(torch.tanh(self.a(s)))


def two_layer(in_shape: tuple[int, ...], out_shape: tuple[int, ...], hidden: int = 32) -> nn.Module:
    """``op: two_layer``, ``params: {hidden: H}``: [B, n_in] → [B, n_out] through H units."""
    return TwoLayer(in_shape[0], out_shape[0], hidden)


class PseudoHuber(pc.Energy):
    """E = w Σ (√(1 + (x − μ)²) − 1): quadratic near 0, linear in the tails."""

    def value(self, x: torch.Tensor, mu: torch.Tensor, precision: float) -> torch.Tensor:
        d = x - mu
        return precision * (torch.sqrt(1 + d * d) - 1).sum()

    def error(self, x: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        d = x - mu
        return d / torch.sqrt(1 + d * d)


class SignDescent(pc.Solver):
    """x ← x − γ sign(g): every neuron moves by γ, whatever the size of its gradient."""

    def step(
        self, x: torch.Tensor, grad: torch.Tensor, state: dict, *, lr: float, stage: int
    ) -> None:
        x.add_(torch.sign(grad), alpha=-lr)


pc.register_op("two_layer", two_layer, smm=2, replace=True)
pc.register_energy("pseudo_huber", PseudoHuber(), replace=True)
pc.register_solver("sign_descent", SignDescent(), replace=True)
