"""The kernels of the convolutional edges: closed-form messages (conv2d_input) and weight
gradients (conv2d_weight)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn import grad as nn_grad

from pcgraph.ops.base import KernelRequest
from pcgraph.ops.kernel import WeightedKernel

__all__ = ["Conv2dKernel", "ConvTranspose2dKernel"]


class _ConvKernel(WeightedKernel):
    def __init__(self, req: KernelRequest, layer: nn.Conv2d | nn.ConvTranspose2d) -> None:
        super().__init__(req, layer)  # torch's default (Kaiming-uniform) initialization
        p = req.params
        self.stride, self.padding, self.dilation = p.stride, p.padding, p.dilation

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

    def __init__(self, req: KernelRequest, layer: nn.ConvTranspose2d) -> None:
        super().__init__(req, layer)
        self.output_padding = req.params.output_padding

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
