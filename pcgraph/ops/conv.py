"""Convolutional edges: ``conv2d`` and ``conv_transpose2d`` between [C, H, W] nodes."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F
from torch.nn import grad as nn_grad

from pcgraph.ops.base import EdgeKernel, EdgeOp, OpParams, Shape, ShapeMismatch

__all__ = ["Conv2dOp", "ConvParams", "ConvTranspose2dOp", "ConvTransposeParams"]


class ConvParams(OpParams):
    """Parameters of ``conv2d``; output channels are taken from the target node's shape."""

    kernel_size: int = Field(3, gt=0)
    stride: int = Field(1, gt=0)
    padding: int = Field(0, ge=0)
    dilation: int = Field(1, gt=0)


class ConvTransposeParams(ConvParams):
    """Parameters of ``conv_transpose2d``."""

    output_padding: int = Field(0, ge=0)


def _check_image(shape: Shape, what: str, op: str) -> None:
    if len(shape) != 3:
        raise ShapeMismatch(f"{op} needs a [C, H, W] {what} but it has shape {list(shape)}")


def _describe(op: str, p: ConvParams) -> str:
    text = f"{op} k={p.kernel_size} s={p.stride}"
    if p.padding:
        text += f" p={p.padding}"
    if p.dilation != 1:
        text += f" d={p.dilation}"
    return text


class _ConvKernel(EdgeKernel):
    local_grads = True
    weight: torch.Tensor
    bias: torch.Tensor | None

    def __init__(
        self,
        in_shape: Shape,
        out_shape: Shape,
        p: ConvParams,
        layer: nn.Conv2d | nn.ConvTranspose2d,
    ) -> None:
        super().__init__(in_shape, out_shape)
        self.stride, self.padding, self.dilation = p.stride, p.padding, p.dilation
        self.weight = layer.weight  # torch's default (Kaiming-uniform) initialization
        self.bias = layer.bias

    def _bias_grads(self, delta: torch.Tensor) -> list[torch.Tensor]:
        return [] if self.bias is None else [-delta.sum((0, 2, 3))]


class Conv2dKernel(_ConvKernel):
    """f(s) = conv2d(s, W) + b; message = conv2d_input(δ); ∂E/∂W = −conv2d_weight(s, δ)."""

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return F.conv2d(s, self.weight, self.bias, self.stride, self.padding, self.dilation)

    def vjp(self, s: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        return nn_grad.conv2d_input(
            s.shape, self.weight, delta, self.stride, self.padding, self.dilation
        )

    def param_grads(self, s: torch.Tensor, delta: torch.Tensor) -> list[torch.Tensor]:
        gw = nn_grad.conv2d_weight(
            s, self.weight.shape, delta, self.stride, self.padding, self.dilation
        )
        return [-gw, *self._bias_grads(delta)]


class ConvTranspose2dKernel(_ConvKernel):
    """f(s) = conv_transpose2d(s, W) + b; message = conv2d(δ, W); ∂E/∂W = −conv2d_weight(δ, s)."""

    def __init__(
        self, in_shape: Shape, out_shape: Shape, p: ConvTransposeParams, layer: nn.ConvTranspose2d
    ) -> None:
        super().__init__(in_shape, out_shape, p, layer)
        self.output_padding = p.output_padding

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(
            s,
            self.weight,
            self.bias,
            self.stride,
            self.padding,
            self.output_padding,
            1,
            self.dilation,
        )

    def vjp(self, s: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        msg = F.conv2d(delta, self.weight, None, self.stride, self.padding, self.dilation)
        # with output_padding ≥ stride (allowed when dilation > stride) conv2d(δ) covers one
        # position more than the source has; that position has no source neuron
        return msg[..., : s.shape[-2], : s.shape[-1]]

    def param_grads(self, s: torch.Tensor, delta: torch.Tensor) -> list[torch.Tensor]:
        # ⟨δ, convT(s, W)⟩ = ⟨conv(δ, W), s⟩, so the weight gradient is conv2d_weight(δ, ·, s),
        # with s zero-padded to conv(δ, W)'s size when output_padding adds a position
        h, w = (
            (n + 2 * self.padding - self.dilation * (k - 1) - 1) // self.stride + 1
            for n, k in zip(delta.shape[-2:], self.weight.shape[-2:], strict=True)
        )
        if (h, w) != tuple(s.shape[-2:]):
            s = F.pad(s, (0, w - s.shape[-1], 0, h - s.shape[-2]))
        gw = nn_grad.conv2d_weight(
            delta, self.weight.shape, s, self.stride, self.padding, self.dilation
        )
        return [-gw, *self._bias_grads(delta)]


class Conv2dOp(EdgeOp):
    """``conv2d``: out = ⌊(H + 2p − d(k−1) − 1)/s⌋ + 1 per spatial dim."""

    name = "conv2d"
    params_model = ConvParams

    def output_shape(self, in_shape: Shape, out_shape: Shape, params: Any) -> Shape:
        _check_image(in_shape, "source", self.name)
        _check_image(out_shape, "target", self.name)
        p: ConvParams = params
        span = p.dilation * (p.kernel_size - 1) + 1
        h, w = ((n + 2 * p.padding - span) // p.stride + 1 for n in in_shape[1:])
        if h <= 0 or w <= 0:
            raise ShapeMismatch(
                f"{self.describe(p)} does not fit a {list(in_shape)} input: the kernel is larger "
                "than the padded image; lower kernel_size or raise padding"
            )
        return (out_shape[0], h, w)

    def describe(self, params: Any) -> str:
        return _describe(self.name, params)

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
        p: ConvParams = params
        layer = nn.Conv2d(
            in_shape[0],
            out_shape[0],
            p.kernel_size,
            p.stride,
            p.padding,
            p.dilation,
            bias=bias,
            device=device,
            dtype=dtype,
        )
        return Conv2dKernel(in_shape, out_shape, p, layer)


class ConvTranspose2dOp(EdgeOp):
    """``conv_transpose2d``: out = (H − 1)s − 2p + d(k−1) + output_padding + 1."""

    name = "conv_transpose2d"
    params_model = ConvTransposeParams

    def output_shape(self, in_shape: Shape, out_shape: Shape, params: Any) -> Shape:
        _check_image(in_shape, "source", self.name)
        _check_image(out_shape, "target", self.name)
        p: ConvTransposeParams = params
        if p.output_padding >= max(p.stride, p.dilation):
            raise ShapeMismatch(
                f"output_padding={p.output_padding} must be smaller than stride or dilation"
            )
        h, w = (
            (n - 1) * p.stride
            - 2 * p.padding
            + p.dilation * (p.kernel_size - 1)
            + p.output_padding
            + 1
            for n in in_shape[1:]
        )
        if h <= 0 or w <= 0:
            raise ShapeMismatch(f"{self.describe(p)} gives an empty output from {list(in_shape)}")
        return (out_shape[0], h, w)

    def describe(self, params: Any) -> str:
        return _describe(self.name, params)

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
        p: ConvTransposeParams = params
        layer = nn.ConvTranspose2d(
            in_shape[0],
            out_shape[0],
            p.kernel_size,
            p.stride,
            p.padding,
            p.output_padding,
            bias=bias,
            dilation=p.dilation,
            device=device,
            dtype=dtype,
        )
        return ConvTranspose2dKernel(in_shape, out_shape, p, layer)
