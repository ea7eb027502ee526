"""Fully connected edges: ``linear`` (vector → vector) and ``dense`` (flatten+linear+reshape).

The declarations (shape rules) only; the kernel is :class:`pcgraph.ops.linear_kernel.LinearKernel`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from pcgraph.names import ACTIVATION_NAMES
from pcgraph.ops.base import EdgeOp, KernelRequest, OpParams, Shape, ShapeMismatch

if TYPE_CHECKING:
    from pcgraph.ops.kernel import EdgeKernel

__all__ = ["DenseOp", "LinearOp", "ScaledLinearOp", "ScaledLinearParams"]


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

    def kernel(self, req: KernelRequest) -> EdgeKernel:
        from pcgraph.ops.linear_kernel import LinearKernel  # torch: only when compiling

        return LinearKernel(req)


class DenseOp(LinearOp):
    """``dense``: flatten the source, apply a weight matrix, reshape to the target's shape —
    connects e.g. an image node [1, 28, 28] to a vector node [256] (and back)."""

    name = "dense"

    def output_shape(self, in_shape: Shape, out_shape: Shape, params: Any) -> Shape:
        return out_shape


class ScaledLinearParams(OpParams):
    """Parameters of ``scaled_linear``: f(s) = [s +] scale · (W φ(s) + b)."""

    scale: float = Field(1.0, gt=0, allow_inf_nan=False)
    activation: str = "identity"  # φ, applied inside the edge (the source node stays linear)
    residual: bool = False  # add the source itself (an identity skip): needs in = out
    init: str = "default"  # "default" (torch's Kaiming-uniform) or "normal" (W ~ N(0, 1))

    @field_validator("activation")
    @classmethod
    def _check_activation(cls, v: str) -> str:
        return ACTIVATION_NAMES.canonical(v)

    @field_validator("init")
    @classmethod
    def _check_init(cls, v: str) -> str:
        if v not in ("default", "normal"):
            raise ValueError(f"init {v!r} is not one of: default, normal")
        return v


class ScaledLinearOp(EdgeOp):
    """``scaled_linear``: f(s) = [s +] a · (W φ(s) + b) between vectors, the layer of a μPC
    residual network (Innocenti et al., 2025; :func:`pcgraph.schema.residual_mlp`): a fixed
    multiplier ``scale`` = a, an activation φ inside the edge, and an optional identity skip
    from the source, so that z_l = z_{l−1} + a W φ(z_{l−1}) is one edge of the graph."""

    name = "scaled_linear"
    params_model = ScaledLinearParams

    def output_shape(self, in_shape: Shape, out_shape: Shape, params: Any) -> Shape:
        if len(in_shape) != 1 or len(out_shape) != 1:
            raise ShapeMismatch(
                f"scaled_linear needs vector nodes, got {list(in_shape)} → {list(out_shape)}"
            )
        if params.residual and in_shape != out_shape:
            raise ShapeMismatch(
                f"a residual scaled_linear adds its source to its output, so both need the "
                f"same size; got {in_shape[0]} → {out_shape[0]}"
            )
        return out_shape

    def describe(self, params: Any) -> str:
        skip = "x + " if params.residual else ""
        act = "" if params.activation == "identity" else f" {params.activation}"
        return f"{skip}{params.scale:.3g}·W{act}"

    def kernel(self, req: KernelRequest) -> EdgeKernel:
        from pcgraph.ops.linear_kernel import ScaledLinearKernel

        return ScaledLinearKernel(req)
