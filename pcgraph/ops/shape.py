"""Parameter-free edges: ``identity`` (same shape), ``flatten`` and ``reshape`` adapters."""

from __future__ import annotations

import math
from typing import Any

import torch

from pcgraph.ops.base import EdgeKernel, EdgeOp, Shape, ShapeMismatch

__all__ = ["FlattenOp", "IdentityOp", "ReshapeKernel", "ReshapeOp"]


class ReshapeKernel(EdgeKernel):
    """f(s) = reshape(s) (identity when the shapes agree): message = reshape back, no parameters."""

    local_grads = True

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return s.reshape(s.shape[0], *self.out_shape)

    def vjp(self, s: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        return delta.reshape(delta.shape[0], *self.in_shape)


class _FixedOp(EdgeOp):
    learnable = False

    def make_kernel(
        self,
        in_shape: Shape,
        out_shape: Shape,
        params: Any,
        *,
        bias: bool,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> EdgeKernel:
        return ReshapeKernel(in_shape, out_shape)


class IdentityOp(_FixedOp):
    """``identity``: the source's value is the prediction (skip connections, copies)."""

    name = "identity"

    def output_shape(self, in_shape: Shape, out_shape: Shape, params: Any) -> Shape:
        return in_shape


class FlattenOp(_FixedOp):
    """``flatten``: [C, H, W] → [C·H·W]."""

    name = "flatten"

    def output_shape(self, in_shape: Shape, out_shape: Shape, params: Any) -> Shape:
        return (math.prod(in_shape),)


class ReshapeOp(_FixedOp):
    """``reshape``: any shape → the target's shape with the same number of elements."""

    name = "reshape"

    def output_shape(self, in_shape: Shape, out_shape: Shape, params: Any) -> Shape:
        if math.prod(in_shape) != math.prod(out_shape):
            raise ShapeMismatch(
                f"reshape cannot turn {list(in_shape)} ({math.prod(in_shape)} values) into "
                f"{list(out_shape)} ({math.prod(out_shape)} values)"
            )
        return out_shape
