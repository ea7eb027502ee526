"""Parameter-free edges: ``identity`` (same shape), ``flatten`` and ``reshape`` adapters.

The declarations only; the kernel is :class:`pcgraph.ops.shape_kernel.ReshapeKernel`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from pcgraph.ops.base import EdgeOp, KernelRequest, Shape, ShapeMismatch

if TYPE_CHECKING:
    from pcgraph.ops.kernel import EdgeKernel

__all__ = ["FlattenOp", "IdentityOp", "ReshapeOp"]


class _FixedOp(EdgeOp):
    learnable = False

    def kernel(self, req: KernelRequest) -> EdgeKernel:
        from pcgraph.ops.shape_kernel import ReshapeKernel  # torch: only when compiling

        return ReshapeKernel(req.in_shape, req.out_shape)


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
