"""The kernel of the fully connected edges (``linear``, ``dense``): closed-form messages and
gradients, with oneDNN for large float32 products on the CPU (:mod:`pcgraph.ops.matmul`)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from pcgraph.ops import matmul
from pcgraph.ops.base import Shape
from pcgraph.ops.kernel import WeightedKernel, write_into

if TYPE_CHECKING:
    from pcgraph.ops.base import KernelRequest

__all__ = ["LinearKernel", "ScaledLinearKernel"]


def _numel(shape: Shape) -> int:
    return math.prod(shape)


class LinearKernel(WeightedKernel):
    """f(s) = W flatten(s) + b, reshaped to the target's shape. Closed-form gradients:
    message Wᵀ δ, ∂E/∂W = −δᵀ s, ∂E/∂b = −Σ_batch δ."""

    def __init__(self, req: KernelRequest) -> None:
        sizes = (_numel(req.in_shape), _numel(req.out_shape))  # Kaiming-uniform, torch's default
        super().__init__(req, nn.Linear(*sizes, bias=req.bias, **req.factory))
        self._flat_in = len(req.in_shape) != 1
        self._flat_out = len(req.out_shape) != 1
        self.plain = not (self._flat_in or self._flat_out)  # vector → vector: no reshapes

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        if self._flat_in:
            s = s.reshape(s.shape[0], -1)
        out = matmul.linear(s, self.weight, self.bias)  # oneDNN where faster (no autograd)
        if out is None:
            out = nn.functional.linear(s, self.weight, self.bias)
        return out.view(out.shape[0], *self.out_shape) if self._flat_out else out

    def vjp(self, s: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        if self._flat_out:
            delta = delta.reshape(delta.shape[0], -1)
        msg = matmul.linear_vjp(delta, self.weight)
        if msg is None:
            msg = delta @ self.weight
        return msg.view(msg.shape[0], *self.in_shape) if self._flat_in else msg

    # --- allocation-free forms of the inference loop (see EdgeKernel); products of a size
    # oneDNN runs faster go there (pcgraph.ops.matmul), the rest write straight into ``out``
    def forward_into(self, s: torch.Tensor, out: torch.Tensor, *, accumulate: bool) -> None:
        if self._flat_in or self._flat_out:
            super().forward_into(s, out, accumulate=accumulate)
            return
        fast = matmul.linear(s, self.weight, self.bias)
        if fast is not None:
            write_into(out, fast, accumulate=accumulate)
        elif accumulate:
            torch.addmm(out, s, self.weight.t(), out=out)
            if self.bias is not None:
                out.add_(self.bias)
        elif self.bias is not None:
            torch.addmm(self.bias, s, self.weight.t(), out=out)
        else:
            torch.mm(s, self.weight.t(), out=out)

    def error_into(self, s: torch.Tensor, x: torch.Tensor, out: torch.Tensor) -> None:
        if self._flat_in or self._flat_out:
            super().error_into(s, x, out)
            return
        fast = matmul.linear(s, self.weight, self.bias)
        if fast is None:
            self.forward_into(s, out, accumulate=False)
            fast = out
        torch.sub(x, fast, out=out)

    def vjp_into(
        self, s: torch.Tensor, delta: torch.Tensor, out: torch.Tensor, *, accumulate: bool
    ) -> None:
        if self._flat_in or self._flat_out:
            super().vjp_into(s, delta, out, accumulate=accumulate)
            return
        fast = matmul.linear_vjp(delta, self.weight)
        if fast is not None:
            write_into(out, fast, accumulate=accumulate)
        elif accumulate:
            torch.addmm(out, delta, self.weight, out=out)
        else:
            torch.mm(delta, self.weight, out=out)

    def reads_strided(self, s: torch.Tensor) -> bool:
        # BLAS reads a row-major operand with a row stride (lda) at full speed; oneDNN copies it
        # in each product, so a source its forward or weight-gradient product runs on is copied
        # once per batch instead
        if not self.plain or s.dim() != 2 or s.stride(1) != 1:
            return False
        m, (n, k) = s.shape[0], self.weight.shape
        return not (
            matmul.use_onednn(s, "forward", m, k, n) or matmul.use_onednn(s, "grad", m, k, n)
        )

    def set_param_grads(self, s: torch.Tensor, delta: torch.Tensor, *, accumulate: bool) -> None:
        gw = self.weight.grad
        if self._flat_in or self._flat_out or gw is None or not gw.is_contiguous():
            super().set_param_grads(s, delta, accumulate=accumulate)
            return
        fast = matmul.linear_grad(delta, s)
        if fast is not None:  # ∂E/∂W = −δᵀ s
            if accumulate:
                gw.sub_(fast)
            else:
                torch.neg(fast, out=gw)
        else:  # straight into .grad (beta = 0 ignores its old contents, NaNs included)
            torch.addmm(gw, delta.t(), s, beta=1 if accumulate else 0, alpha=-1, out=gw)
        if self.bias is not None:
            gb = self.bias.grad
            if gb is None:
                self.bias.grad = -delta.sum(0)
            elif accumulate:
                gb.sub_(delta.sum(0))
            else:
                torch.sum(delta, 0, out=gb).neg_()

    def param_grads(self, s: torch.Tensor, delta: torch.Tensor) -> list[torch.Tensor]:
        s2 = s.reshape(s.shape[0], -1)
        d2 = delta.reshape(delta.shape[0], -1)
        grads = [-(d2.t() @ s2)]
        if self.bias is not None:
            grads.append(-d2.sum(0))
        return grads


class ScaledLinearKernel(WeightedKernel):
    """f(s) = [s +] a (W φ(s) + b) (see :class:`pcgraph.ops.linear.ScaledLinearOp`). Closed
    forms, with y = φ(s): message [δ +] a φ'(s) ⊙ (δ W), ∂E/∂W = −a δᵀ y, ∂E/∂b = −a Σ_batch δ."""

    def __init__(self, req: KernelRequest) -> None:
        from pcgraph.activations import get_activation

        params = req.params
        ref = nn.Linear(req.in_shape[0], req.out_shape[0], bias=req.bias, **req.factory)
        if params.init == "normal":  # μPC: W ~ N(0, 1), the scale a carries the 1/√fan-in
            with torch.no_grad():
                ref.weight.normal_()
                if ref.bias is not None:
                    ref.bias.zero_()
        super().__init__(req, ref)
        self.scale, self.residual = float(params.scale), bool(params.residual)
        self.act = get_activation(params.activation)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        out = nn.functional.linear(self.act.fn(s), self.weight, self.bias) * self.scale
        return out + s if self.residual else out

    def vjp(self, s: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        m = self.act.vjp((delta @ self.weight) * self.scale, s)
        return m + delta if self.residual else m

    def param_grads(self, s: torch.Tensor, delta: torch.Tensor) -> list[torch.Tensor]:
        grads = [-(delta.t() @ self.act.fn(s)) * self.scale]
        if self.bias is not None:
            grads.append(-delta.sum(0) * self.scale)
        return grads
