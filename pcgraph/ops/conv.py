"""Convolutional edges: ``conv2d`` and ``conv_transpose2d`` between [C, H, W] nodes.

The declarations (parameters, shape rules) only; the kernels are in :mod:`pcgraph.ops.conv_kernel`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

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


class _ConvOp(EdgeOp):
    """Shared by the two convolutions: [C, H, W] at both ends, output channels from the target,
    the spatial size from :meth:`spatial`, the kernel from a torch layer of :meth:`layer`."""

    kernel_class: ClassVar[str]  # its class in pcgraph.ops.conv_kernel

    def output_shape(self, in_shape: Shape, out_shape: Shape, params: Any) -> Shape:
        _check_image(in_shape, "source", self.name)
        _check_image(out_shape, "target", self.name)
        h, w = (self.spatial(n, params) for n in in_shape[1:])
        if h <= 0 or w <= 0:
            raise ShapeMismatch(self.empty_output(in_shape, params))
        return (out_shape[0], h, w)

    def spatial(self, n: int, p: Any) -> int:
        """The output size of one spatial dimension of input size ``n``."""
        raise NotImplementedError

    def empty_output(self, in_shape: Shape, p: Any) -> str:
        """The message when the output would be empty."""
        return f"{self.describe(p)} gives an empty output from {list(in_shape)}"

    def describe(self, params: Any) -> str:
        text = f"{self.name} k={params.kernel_size} s={params.stride}"
        if params.padding:
            text += f" p={params.padding}"
        if params.dilation != 1:
            text += f" d={params.dilation}"
        return text

    def layer(self, req: KernelRequest) -> Any:
        """The torch layer whose weight and bias (torch's default init) the kernel takes."""
        raise NotImplementedError

    def kernel(self, req: KernelRequest) -> EdgeKernel:
        from pcgraph.ops import conv_kernel  # torch: only when compiling

        kernel_class = getattr(conv_kernel, self.kernel_class)
        return kernel_class(req, self.layer(req))


class Conv2dOp(_ConvOp):
    """``conv2d``: out = ⌊(H + 2p − d(k−1) − 1)/s⌋ + 1 per spatial dim."""

    name = "conv2d"
    params_model = ConvParams
    kernel_class = "Conv2dKernel"

    def spatial(self, n: int, p: ConvParams) -> int:
        return (n + 2 * p.padding - p.dilation * (p.kernel_size - 1) - 1) // p.stride + 1

    def empty_output(self, in_shape: Shape, p: ConvParams) -> str:
        return (
            f"{self.describe(p)} does not fit a {list(in_shape)} input: the kernel is larger "
            "than the padded image; lower kernel_size or raise padding"
        )

    def layer(self, req: KernelRequest) -> Any:
        from torch import nn

        p: ConvParams = req.params
        channels = (req.in_shape[0], req.out_shape[0])
        return nn.Conv2d(
            *channels, p.kernel_size, p.stride, p.padding, p.dilation, bias=req.bias, **req.factory
        )


class ConvTranspose2dOp(_ConvOp):
    """``conv_transpose2d``: out = (H − 1)s − 2p + d(k−1) + output_padding + 1."""

    name = "conv_transpose2d"
    params_model = ConvTransposeParams
    kernel_class = "ConvTranspose2dKernel"

    def output_shape(self, in_shape: Shape, out_shape: Shape, params: Any) -> Shape:
        if params.output_padding >= max(params.stride, params.dilation):
            raise ShapeMismatch(
                f"output_padding={params.output_padding} must be smaller than stride or dilation"
            )
        return super().output_shape(in_shape, out_shape, params)

    def spatial(self, n: int, p: ConvTransposeParams) -> int:
        span = p.dilation * (p.kernel_size - 1)
        return (n - 1) * p.stride - 2 * p.padding + span + p.output_padding + 1

    def layer(self, req: KernelRequest) -> Any:
        from torch import nn

        p: ConvTransposeParams = req.params
        channels = (req.in_shape[0], req.out_shape[0])
        return nn.ConvTranspose2d(
            *channels,
            p.kernel_size,
            p.stride,
            p.padding,
            p.output_padding,
            bias=req.bias,
            dilation=p.dilation,
            **req.factory,
        )
