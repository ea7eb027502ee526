"""The kernel of an edge carried by a user's ``torch.nn.Module`` (:mod:`pcgraph.ops.module`)."""

from __future__ import annotations

import torch
from torch import nn

from pcgraph.errors import SpecError
from pcgraph.ops.base import KernelRequest, Shape
from pcgraph.ops.kernel import EdgeKernel

__all__ = ["ModuleKernel", "check_module"]


class ModuleKernel(EdgeKernel):
    """f(s) = module(s). Messages and parameter gradients by autograd (the
    :class:`EdgeKernel` defaults), or by the module's own ``vjp(s, delta)`` and
    ``param_grads(s, delta)`` where it defines them."""

    def __init__(self, req: KernelRequest, module: object) -> None:
        super().__init__(req.in_shape, req.out_shape)
        if not isinstance(module, nn.Module):
            raise SpecError(
                f"the module factory returned {type(module).__name__}, not a torch.nn.Module"
            )
        self.module = module.to(device=req.device, dtype=req.dtype)
        self.local_grads = hasattr(module, "vjp")  # type: ignore[misc]

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.module(s)

    def vjp(self, s: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        own = getattr(self.module, "vjp", None)
        return own(s, delta) if own is not None else super().vjp(s, delta)

    def param_grads(self, s: torch.Tensor, delta: torch.Tensor) -> list[torch.Tensor]:
        own = getattr(self.module, "param_grads", None)
        return list(own(s, delta)) if own is not None else super().param_grads(s, delta)


def check_module(kernel: ModuleKernel, label: str, in_shape: Shape, out_shape: Shape) -> None:
    """Run the module once on a batch of 2 zeros: it must give ``[2, *out_shape]``; anything
    else is a SpecError naming the edge and both shapes."""
    p = next(kernel.parameters(), None)
    probe = torch.zeros(
        2,
        *in_shape,
        device=p.device if p is not None else None,
        dtype=p.dtype if p is not None else None,
    )
    was_training = kernel.training
    try:
        with torch.no_grad():
            kernel.eval()  # no dropout draw, no running-statistics update on the probe
            out = kernel(probe)
    except Exception as exc:
        raise SpecError(
            f"edge {label}: its module failed on a batch of shape {[2, *in_shape]}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    finally:
        kernel.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, *out_shape):
        got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise SpecError(
            f"edge {label}: its module maps [B, {', '.join(map(str, in_shape))}] to {got} "
            f"for B = 2; the target needs [B, {', '.join(map(str, out_shape))}]. Make the module "
            "return the target node's shape"
        )
