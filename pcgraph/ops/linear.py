"""Fully connected edges: ``linear`` (vector → vector) and ``dense`` (flatten+linear+reshape).

The declarations (shape rules) only; the kernel is :class:`pcgraph.ops.linear_kernel.LinearKernel`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pcgraph.ops.base import EdgeOp, Shape, ShapeMismatch

if TYPE_CHECKING:
    import torch

    from pcgraph.ops.kernel import EdgeKernel

__all__ = ["DenseOp", "LinearOp"]


class LinearOp(EdgeOp):
    """``linear``: a weight matrix between two vector nodes (the paper's f_l(x) = W σ(x) + b)."""

    name = "linear"

    def output_shape(self, in_shape: Shape, out_shape: Shape, params: Any) -> Shape:
        if len(in_shape) != 1:
            raise ShapeMismatch(
                f"linear needs a vector source but it has shape {list(in_shape)}; "
                "use op: dense (flatten + linear) for image-shaped nodes"
            )
        if len(out_shape) != 1:
            raise ShapeMismatch(
                f"linear needs a vector target but it has shape {list(out_shape)}; "
                "use op: dense (linear + reshape) for image-shaped nodes"
            )
        return out_shape

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
        from pcgraph.ops.linear_kernel import LinearKernel  # torch: only when compiling

        return LinearKernel(in_shape, out_shape, bias=bias, device=device, dtype=dtype)


class DenseOp(LinearOp):
    """``dense``: flatten the source, apply a weight matrix, reshape to the target's shape —
    connects e.g. an image node [1, 28, 28] to a vector node [256] (and back)."""

    name = "dense"

    def output_shape(self, in_shape: Shape, out_shape: Shape, params: Any) -> Shape:
        return out_shape
