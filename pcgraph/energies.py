"""Node energies: the per-node term of E and its two derivatives the engine needs.

For node i with prediction μ_i and state x_i (precision w_i):

- gaussian:       E_i = ½ w_i ‖x_i − μ_i‖²,  δ_i = −∂E_i/∂μ_i = w_i ε_i,  ∂E_i/∂x_i = w_i ε_i
- cross_entropy:  E_i = −w_i Σ_k x_ik log softmax(μ_i)_k,  δ_i = w_i (x_i − softmax(μ_i) Σ_k x_ik).
                  A clamped CE node (labels) sends δ to its parents. E_i is linear in x_i, so a
                  free CE node is not moved by gradient steps (they would leave the simplex and
                  never stop): inference holds it at its prediction softmax(μ_i), where δ_i = 0
                  and E_i is the entropy of the prediction.

Energies are summed over the batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pcgraph.registry import Registry

if TYPE_CHECKING:
    import torch

__all__ = ["ENERGIES", "node_energy"]

ENERGIES: Registry[str] = Registry("energy")
ENERGIES.register("gaussian", "gaussian", aliases=("mse", "squared_error"))
ENERGIES.register("cross_entropy", "cross_entropy", aliases=("ce", "xent"))


def node_energy(kind: str, x: torch.Tensor, mu: torch.Tensor, precision: float) -> torch.Tensor:
    """E_i summed over the batch (differentiable; the reference the closed forms are tested on)."""
    import torch  # here, so that the schema can read ENERGIES without torch

    if kind == "cross_entropy":
        logp = torch.log_softmax(mu, dim=-1)
        return -precision * (x * logp).sum()
    diff = x - mu
    return 0.5 * precision * (diff * diff).sum()
