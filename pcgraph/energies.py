"""Node energies: one object per kind, with everything the engine needs of it.

For node i with prediction μ_i and state x_i (precision w_i), every energy gives

- ``value``: E_i summed over the batch;
- ``error``: the "ε" for which δ_i = −∂E_i/∂μ_i = w_i ε_i, so that the engine treats every
  node alike (messages δ W, weight gradients −δᵀ s);
- ``held``: whether a free node of this energy is *held* at ``mean(μ_i)`` instead of moved by
  gradient steps. E_i is linear in x_i for the likelihood energies below, so gradient steps
  would never stop; their minimiser over the data's domain is the model's mean, where δ_i = 0.

The kinds:

- ``gaussian``:       E = ½ w ‖x − μ‖²,                       ε = x − μ   (not held)
- ``cross_entropy``:  E = −w Σ_k x_k log softmax(μ)_k,         ε = x − softmax(μ) Σ_k x_k,
                      held at softmax(μ) (labels, one-hot or soft)
- ``bernoulli``:      E = −w Σ [x log σ(μ) + (1 − x) log(1 − σ(μ))] = w Σ [softplus(μ) − x μ],
                      ε = x − σ(μ), held at σ(μ) (binary or [0, 1] data such as images)

A new energy is one subclass here plus its registration; the schema, the program, the network,
the initializers and the analysis ask the object. This module imports torch only inside the
methods, so that the schema can read the names without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pcgraph.registry import Registry

if TYPE_CHECKING:
    import torch

__all__ = [
    "ENERGIES",
    "Bernoulli",
    "CrossEntropy",
    "Energy",
    "Gaussian",
    "get_energy",
    "node_energy",
]


class Energy:
    """One kind of node energy (see the module docstring)."""

    name: ClassVar[str]
    held: ClassVar[bool] = False  # a free node sits at mean(μ) instead of being stepped
    needs_vector: ClassVar[bool] = False  # defined over a vector (classes), not any shape

    def value(self, x: torch.Tensor, mu: torch.Tensor, precision: float) -> torch.Tensor:
        """E_i summed over the batch (differentiable)."""
        raise NotImplementedError

    def error(self, x: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        """ε with δ = −∂E/∂μ = w ε."""
        raise NotImplementedError

    def mean(self, mu: torch.Tensor) -> torch.Tensor:
        """The state a free node of this energy is held at (μ itself when not held)."""
        return mu


class Gaussian(Energy):
    name = "gaussian"

    def value(self, x: torch.Tensor, mu: torch.Tensor, precision: float) -> torch.Tensor:
        diff = x - mu
        return 0.5 * precision * (diff * diff).sum()

    def error(self, x: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        return x - mu


class CrossEntropy(Energy):
    name = "cross_entropy"
    held = True
    needs_vector = True

    def value(self, x: torch.Tensor, mu: torch.Tensor, precision: float) -> torch.Tensor:
        import torch

        return -precision * (x * torch.log_softmax(mu, dim=-1)).sum()

    def error(self, x: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        import torch

        return x - torch.softmax(mu, dim=-1) * x.sum(-1, keepdim=True)

    def mean(self, mu: torch.Tensor) -> torch.Tensor:
        import torch

        return torch.softmax(mu, dim=-1)


class Bernoulli(Energy):
    name = "bernoulli"
    held = True

    def value(self, x: torch.Tensor, mu: torch.Tensor, precision: float) -> torch.Tensor:
        import torch

        return precision * (torch.nn.functional.softplus(mu) - x * mu).sum()

    def error(self, x: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        import torch

        return x - torch.sigmoid(mu)

    def mean(self, mu: torch.Tensor) -> torch.Tensor:
        import torch

        return torch.sigmoid(mu)


ENERGIES: Registry[Energy] = Registry("energy")
ENERGIES.register("gaussian", Gaussian(), aliases=("mse", "squared_error"))
ENERGIES.register("cross_entropy", CrossEntropy(), aliases=("ce", "xent"))
ENERGIES.register("bernoulli", Bernoulli(), aliases=("bce", "binary_cross_entropy"))


def get_energy(name: str) -> Energy:
    """The energy registered as ``name`` (aliases accepted)."""
    return ENERGIES.get(name)


def node_energy(kind: str, x: torch.Tensor, mu: torch.Tensor, precision: float) -> torch.Tensor:
    """E_i summed over the batch (differentiable; the reference the closed forms are tested on)."""
    return ENERGIES.get(kind).value(x, mu, precision)
