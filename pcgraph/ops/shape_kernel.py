"""The kernel of the parameter-free edges (identity, flatten, reshape)."""

from __future__ import annotations

import torch

from pcgraph.ops.kernel import EdgeKernel

__all__ = ["ReshapeKernel"]


class ReshapeKernel(EdgeKernel):
    """f(s) = reshape(s) (identity when the shapes agree): message = reshape back, no parameters."""

    local_grads = True

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return s.reshape(s.shape[0], *self.out_shape)

    def vjp(self, s: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        return delta.reshape(delta.shape[0], *self.in_shape)
