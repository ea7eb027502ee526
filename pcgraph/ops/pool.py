"""Pooling, normalization, dropout and attention edges: ``avg_pool2d``, ``max_pool2d``,
``layer_norm``, ``dropout``, ``self_attention``.

The declarations (parameters, shape rules) import no torch; each kernel is a torch module in
:mod:`pcgraph.ops.pool_kernel` run by :class:`pcgraph.ops.module_kernel.ModuleKernel`, whose
messages J_fᵀ δ and parameter gradients come from autograd (the closed forms of pooling are
exactly what autograd computes: the mean's δ spread over its window, the max's δ routed to the
arg-max).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from pcgraph.ops.base import EdgeOp, KernelRequest, OpParams, Shape, ShapeMismatch

if TYPE_CHECKING:
    from pcgraph.ops.kernel import EdgeKernel

__all__ = [
    "AttentionParams",
    "AvgPool2dOp",
    "DropoutOp",
    "DropoutParams",
    "LayerNormOp",
    "LayerNormParams",
    "MaxPool2dOp",
    "PoolParams",
    "SelfAttentionOp",
]


class PoolParams(OpParams):
    """Parameters of the poolings: a square window of ``kernel_size``, moved by ``stride``
    (default: the window, so windows do not overlap), after zero ``padding`` on each side."""

    kernel_size: int = Field(2, gt=0)
    stride: int | None = Field(None, gt=0)
    padding: int = Field(0, ge=0)


class _PoolOp(EdgeOp):
    learnable = False
    takes_bias = False
    params_model = PoolParams

    def describe(self, params: Any) -> str:
        stride = params.stride or params.kernel_size
        return f"{self.name} k={params.kernel_size} s={stride}"

    def output_shape(self, in_shape: Shape, out_shape: Shape, params: Any) -> Shape:
        if len(in_shape) != 3:
            raise ShapeMismatch(
                f"{self.name} needs a [C, H, W] source but it has shape {list(in_shape)}"
            )
        k, p = params.kernel_size, params.padding
        s = params.stride or k
        if 2 * p > k:
            raise ShapeMismatch(f"{self.name}: padding={p} must be at most half of kernel_size={k}")
        c, h, w = in_shape
        if k > h + 2 * p or k > w + 2 * p:
            raise ShapeMismatch(
                f"{self.name} kernel_size={k} (padding {p}) does not fit the source "
                f"{list(in_shape)}: the window is larger than its {h}×{w} image; use "
                f"kernel_size ≤ {min(h, w) + 2 * p}"
            )
        return (c, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1)

    def kernel(self, req: KernelRequest) -> EdgeKernel:
        from pcgraph.ops.module_kernel import ModuleKernel  # torch: only when compiling
        from pcgraph.ops.pool_kernel import pooling

        p = req.params
        return ModuleKernel(req, pooling(self.name, p.kernel_size, p.stride, p.padding))


class AvgPool2dOp(_PoolOp):
    """``avg_pool2d``: the mean of each window (padding counts as zeros)."""

    name = "avg_pool2d"


class MaxPool2dOp(_PoolOp):
    """``max_pool2d``: the largest value of each window; δ flows to the arg-max only."""

    name = "max_pool2d"


class LayerNormParams(OpParams):
    """``elementwise_affine``: learn a gain and a bias per element (torch's LayerNorm);
    ``eps``: added to the variance."""

    elementwise_affine: bool = True
    eps: float = Field(1e-5, gt=0)


class LayerNormOp(EdgeOp):
    """``layer_norm``: μ = (s − mean(s)) / √(var(s) + eps) · g + b over all of the source's
    elements per sample (torch.nn.LayerNorm over its whole shape). Same shape at both ends."""

    name = "layer_norm"
    takes_bias = False  # the affine's bias is the edge's
    params_model = LayerNormParams

    def output_shape(self, in_shape: Shape, out_shape: Shape, params: Any) -> Shape:
        return in_shape

    def kernel(self, req: KernelRequest) -> EdgeKernel:
        from pcgraph.ops.module_kernel import ModuleKernel
        from pcgraph.ops.pool_kernel import layer_norm

        p = req.params
        return ModuleKernel(req, layer_norm(req.in_shape, p.elementwise_affine, p.eps))


class DropoutParams(OpParams):
    """``p``: the probability that an element is dropped, in [0, 1)."""

    p: float = Field(0.5, ge=0.0, lt=1.0)


class DropoutOp(EdgeOp):
    """``dropout``: μ = s ⊙ m / (1 − p), m ~ Bernoulli(1 − p) per element, in training only.

    One mask per training minibatch, drawn from the learner's generator when the batch's first
    prediction is made and kept through its initialization, every inference step and the weight
    update (the energy must stay one function while inference descends it); at evaluation the
    edge is the identity. Same shape at both ends; no parameters."""

    name = "dropout"
    learnable = False
    takes_bias = False
    params_model = DropoutParams

    def describe(self, params: Any) -> str:
        return f"dropout p={params.p:g}"

    def output_shape(self, in_shape: Shape, out_shape: Shape, params: Any) -> Shape:
        return in_shape

    def kernel(self, req: KernelRequest) -> EdgeKernel:
        from pcgraph.ops.module_kernel import ModuleKernel
        from pcgraph.ops.pool_kernel import Dropout

        return ModuleKernel(req, Dropout(req.params.p))


class AttentionParams(OpParams):
    """``heads`` must divide the token width ``dim``."""

    heads: int = Field(1, gt=0)


class SelfAttentionOp(EdgeOp):
    """``self_attention`` on a ``[tokens, dim]`` source: multi-head softmax attention of the
    tokens to each other (torch.nn.MultiheadAttention with query = key = value = s), to a
    target of the same shape. Four sequential products: the Q/K/V projections (in parallel),
    Q Kᵀ, the weights times V, the output projection."""

    name = "self_attention"
    takes_bias = False
    smm = 4
    params_model = AttentionParams

    def describe(self, params: Any) -> str:
        return f"{self.name} heads={params.heads}"

    def output_shape(self, in_shape: Shape, out_shape: Shape, params: Any) -> Shape:
        if len(in_shape) != 2:
            raise ShapeMismatch(
                f"self_attention needs a [tokens, dim] source but it has shape {list(in_shape)}"
            )
        dim = in_shape[1]
        if dim % params.heads:
            raise ShapeMismatch(
                f"self_attention: heads={params.heads} does not divide the token width "
                f"dim={dim} of the source {list(in_shape)}; use a divisor of {dim}"
            )
        return in_shape

    def kernel(self, req: KernelRequest) -> EdgeKernel:
        from pcgraph.ops.module_kernel import ModuleKernel
        from pcgraph.ops.pool_kernel import SelfAttention

        return ModuleKernel(req, SelfAttention(req.in_shape[1], req.params.heads))
