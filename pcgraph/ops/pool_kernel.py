"""The torch modules of :mod:`pcgraph.ops.pool` (imported when a network is compiled)."""

from __future__ import annotations

import torch
from torch import nn

from pcgraph.ops.base import Shape

__all__ = ["Dropout", "SelfAttention", "layer_norm", "pooling"]


def pooling(name: str, kernel_size: int, stride: int | None, padding: int) -> nn.Module:
    """``avg_pool2d`` (padding counted as zeros) or ``max_pool2d``."""
    stride = stride or kernel_size
    if name == "max_pool2d":
        return nn.MaxPool2d(kernel_size, stride, padding)
    return nn.AvgPool2d(kernel_size, stride, padding, count_include_pad=True)


def layer_norm(shape: Shape, elementwise_affine: bool, eps: float) -> nn.Module:
    """torch's LayerNorm over every element of a sample of ``shape``."""
    return nn.LayerNorm(tuple(shape), eps=eps, elementwise_affine=elementwise_affine)


class SelfAttention(nn.Module):
    """[B, tokens, dim] → [B, tokens, dim]: multi-head attention with query = key = value."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        out, _ = self.attention(s, s, s, need_weights=False)
        return out


class Dropout(nn.Module):
    """s ⊙ m / (1 − p) with one mask m per training minibatch (:class:`pcgraph.ops.pool.
    DropoutOp`); the identity when not training. :meth:`new_batch` starts a minibatch: the
    next forward draws a mask of its input's shape from ``generator``."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.active = False
        self.mask: torch.Tensor | None = None
        self.generator: torch.Generator | None = None

    def new_batch(self, train: bool, generator: torch.Generator | None) -> None:
        self.active, self.mask, self.generator = train and self.p > 0, None, generator

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return s
        if self.mask is None or self.mask.shape != s.shape:
            keep = torch.rand(s.shape, generator=self.generator, device="cpu", dtype=s.dtype)
            self.mask = (keep >= self.p).to(device=s.device, dtype=s.dtype) / (1 - self.p)
        return s * self.mask
