"""Convolutional edges: ``conv2d`` and ``conv_transpose2d`` between [C, H, W] nodes.

The declarations (parameters, shape rules) only; the kernels are in :mod:`pcgraph.ops.conv_kernel`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from pcgraph.ops.base import EdgeOp, KernelRequest, OpParams, Shape, ShapeMismatch

if TYPE_CHECKING:
    from pcgraph.ops.kernel import EdgeKernel

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

    def kernel(self, req: KernelRequest) -> EdgeKernel:
        from torch import nn

        from pcgraph.ops.conv_kernel import Conv2dKernel  # torch: only when compiling

        p: ConvParams = req.params
        channels = (req.in_shape[0], req.out_shape[0])
        layer = nn.Conv2d(
            *channels, p.kernel_size, p.stride, p.padding, p.dilation, bias=req.bias, **req.factory
        )
        return Conv2dKernel(req, layer)


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

    def kernel(self, req: KernelRequest) -> EdgeKernel:
        from torch import nn

        from pcgraph.ops.conv_kernel import ConvTranspose2dKernel

        p: ConvTransposeParams = req.params
        channels = (req.in_shape[0], req.out_shape[0])
        layer = nn.ConvTranspose2d(
            *channels,
            p.kernel_size,
            p.stride,
            p.padding,
            p.output_padding,
            bias=req.bias,
            dilation=p.dilation,
            **req.factory,
        )
        return ConvTranspose2dKernel(req, layer)
