"""Edge kernels: the executable form of an edge op (torch), built by :meth:`EdgeOp.make_kernel`.

An edge j→i carries a transformation f_ji. Its *kernel* computes the contribution f_ji(s_j) to the
prediction μ_i of the target, the message J_fᵀ δ_i sent back to the source, and the parameter
gradients ∂E/∂θ_ji = −(∂f/∂θ)ᵀ δ_i, where δ_i = −∂E/∂μ_i is the target's error signal
(w_i ε_i for a gaussian node).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

import torch
from torch import nn

from pcgraph.ops.base import Shape

if TYPE_CHECKING:
    from pcgraph.ops.base import KernelRequest

__all__ = ["EdgeKernel", "WeightedKernel", "store_grad", "write_into"]


class EdgeKernel(nn.Module):
    """Executable form of one edge; subclasses override the closed forms where they have them.

    The defaults compute the message and the parameter gradients with autograd, so any op that
    implements :meth:`forward` works; ``local_grads`` says whether closed forms are used.
    """

    local_grads: ClassVar[bool] = False

    def __init__(self, in_shape: Shape, out_shape: Shape) -> None:
        super().__init__()
        self.in_shape = in_shape
        self.out_shape = out_shape

    def forward(self, s: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """f(s) for a batch: [B, *in_shape] → [B, *out_shape]."""
        raise NotImplementedError

    def vjp(self, s: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """J_f(s)ᵀ δ: the error message sent back to the source, shape [B, *in_shape]."""
        with torch.enable_grad():
            s_ = s.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.forward(s_), s_, delta)
        return grad

    def param_grads(self, s: torch.Tensor, delta: torch.Tensor) -> list[torch.Tensor]:
        """∂E/∂θ for ``self.parameters()`` in order: −(∂f/∂θ)ᵀ δ."""
        params = list(self.parameters())
        if not params:
            return []
        with torch.enable_grad():
            out = self.forward(s.detach())
            grads = torch.autograd.grad(out, params, -delta)
        return list(grads)

    # --- allocation-free forms used by the inference loop; ops override them where they can
    # write straight into the preallocated state buffers (``out`` may be a strided view)
    def forward_into(self, s: torch.Tensor, out: torch.Tensor, *, accumulate: bool) -> None:
        """out ← f(s), or out ← out + f(s) when ``accumulate``."""
        write_into(out, self.forward(s), accumulate=accumulate)

    def error_into(self, s: torch.Tensor, x: torch.Tensor, out: torch.Tensor) -> None:
        """out ← x − f(s): the prediction error of a target whose only parent is this edge."""
        self.forward_into(s, out, accumulate=False)
        torch.sub(x, out, out=out)

    def vjp_into(
        self, s: torch.Tensor, delta: torch.Tensor, out: torch.Tensor, *, accumulate: bool
    ) -> None:
        """out ← J_f(s)ᵀ δ, or out ← out + J_f(s)ᵀ δ when ``accumulate``."""
        write_into(out, self.vjp(s, delta), accumulate=accumulate)

    def reads_strided(self, s: torch.Tensor) -> bool:
        """Whether every product of this kernel on the source ``s`` (a node's columns of the
        flat state, [B, *in_shape], row stride D) runs as fast on that view as on a contiguous
        copy. False by default: the caller then makes one copy per batch."""
        return False

    def set_param_grads(self, s: torch.Tensor, delta: torch.Tensor, *, accumulate: bool) -> None:
        """p.grad ← ∂E/∂θ (or += when ``accumulate``) for every parameter, reusing the
        existing ``.grad`` tensors where there are some."""
        for p, g in zip(self.parameters(), self.param_grads(s, delta), strict=True):
            store_grad(p, g, accumulate=accumulate)


class WeightedKernel(EdgeKernel):
    """A kernel with a weight and an optional bias, taken from a torch layer built for the edge
    (so they start from torch's default initialization), and closed-form gradients."""

    local_grads = True
    weight: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, req: KernelRequest, layer: nn.Module) -> None:
        super().__init__(req.in_shape, req.out_shape)
        self.weight = cast(torch.Tensor, layer.weight)
        self.bias = cast("torch.Tensor | None", layer.bias)


def write_into(out: torch.Tensor, value: torch.Tensor, *, accumulate: bool) -> None:
    """out ← value, or out ← out + value (``out`` a preallocated, possibly strided view)."""
    if accumulate:
        out.add_(value)
    else:
        out.copy_(value)


def store_grad(p: torch.Tensor, g: torch.Tensor, *, accumulate: bool) -> None:
    """p.grad ← g (or += g), in place when p already has a gradient of the same layout."""
    if p.grad is None or p.grad.shape != g.shape:
        p.grad = g
    elif accumulate:
        p.grad.add_(g)
    else:
        p.grad.copy_(g)
