"""Fully connected edges: ``linear`` (vector → vector) and ``dense`` (flatten+linear+reshape)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from pcgraph.ops.base import EdgeKernel, EdgeOp, Shape, ShapeMismatch

__all__ = ["DenseOp", "LinearKernel", "LinearOp"]


def _numel(shape: Shape) -> int:
    return math.prod(shape)


class LinearKernel(EdgeKernel):
    """f(s) = W flatten(s) + b, reshaped to the target's shape. Closed-form gradients:
    message Wᵀ δ, ∂E/∂W = −δᵀ s, ∂E/∂b = −Σ_batch δ."""

    local_grads = True
    weight: torch.Tensor
    bias: torch.Tensor | None

    def __init__(
        self,
        in_shape: Shape,
        out_shape: Shape,
        *,
        bias: bool,
        device: torch.device | str | None,
        dtype: torch.dtype | None,
    ) -> None:
        super().__init__(in_shape, out_shape)
        ref = nn.Linear(_numel(in_shape), _numel(out_shape), bias=bias, device=device, dtype=dtype)
        self.weight = ref.weight  # Kaiming-uniform, torch's default
        self.bias = ref.bias
        self._flat_in = len(in_shape) != 1
        self._flat_out = len(out_shape) != 1

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        if self._flat_in:
            s = s.reshape(s.shape[0], -1)
        out = nn.functional.linear(s, self.weight, self.bias)
        return out.view(out.shape[0], *self.out_shape) if self._flat_out else out

    def vjp(self, s: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        if self._flat_out:
            delta = delta.reshape(delta.shape[0], -1)
        msg = delta @ self.weight
        return msg.view(msg.shape[0], *self.in_shape) if self._flat_in else msg

    def param_grads(self, s: torch.Tensor, delta: torch.Tensor) -> list[torch.Tensor]:
        s2 = s.reshape(s.shape[0], -1)
        d2 = delta.reshape(delta.shape[0], -1)
        grads = [-(d2.t() @ s2)]
        if self.bias is not None:
            grads.append(-d2.sum(0))
        return grads


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
        return LinearKernel(in_shape, out_shape, bias=bias, device=device, dtype=dtype)


class DenseOp(LinearOp):
    """``dense``: flatten the source, apply a weight matrix, reshape to the target's shape —
    connects e.g. an image node [1, 28, 28] to a vector node [256] (and back)."""

    name = "dense"

    def output_shape(self, in_shape: Shape, out_shape: Shape, params: Any) -> Shape:
        return out_shape
