"""The strongest plain-torch floor for one backprop update of an MLP: a tuned hand-written step.

Not part of the package; shared by ``bench_tta.py``, ``bench_peers.py`` and ``bench_step.py``.
An autograd step through ``nn.Linear`` runs every product on torch's default CPU library (MKL),
which on an AVX-512 processor is up to 2× slower than oneDNN for the products of these MLPs; a
PC loop that picks the faster library would then beat a backprop that nobody tuned. This step
is written as :class:`_tuned.TunedMLP` is, for backprop:

- every product runs on MKL or oneDNN, whichever was faster for its shape on this machine
  (the same timed choice as the tuned PC loop, ``_tuned._mm_t`` / ``_grad_w``);
- every buffer (pre-activations z, activations a, back-propagated δ) is allocated once per batch
  size and written in place; each activation is computed once, its derivative from z (GELU)
  or from a (tanh, sigmoid, relu), on pcgraph's C kernels where they are built (the fastest at
  hand, as in the tuned PC loop);
- each weight gradient is one product straight into ``.grad``; no gradient for the data.

The rule, for z_l = W_l a_{l−1} + b_l, a_l = σ(z_l), a_0 = x, logits (or the output) z_L, with
the loss's negative gradient δ_L = −∂loss/∂z_L:

- cross-entropy (mean over the batch, ``F.cross_entropy`` with soft or one-hot targets y):
  δ_L = (y − softmax(z_L) Σ y) / B;
- summed squared error ½ Σ (z_L − y)²: δ_L = y − z_L;
- δ_{l−1} = (δ_l W_l) ⊙ σ'(z_{l−1}); ∂loss/∂W_l = −δ_lᵀ a_{l−1}, ∂loss/∂b_l = −Σ_batch δ_l;
  one optimizer step.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
from _tuned import _FN, _NATIVE, _VJP, _grad_w, _mm_t

from pcgraph.activations import get_activation

LOSSES = ("cross_entropy", "sse")


class TunedBackprop:
    """One backprop update of an MLP, by hand (see the module docstring).

    Args:
        weights, biases: W_l [n_l, n_{l−1}] and b_l [n_l], l = 1 … L (leaf tensors; their
            ``.grad`` is written in place each update).
        activation: σ of the hidden layers (tanh, relu, gelu, sigmoid); the output is linear.
        optimizer: over ``weights`` and ``biases``.
        loss: ``cross_entropy`` (mean over the batch) or ``sse`` (½ Σ (z_L − y)²).
    """

    def __init__(
        self,
        weights: Sequence[torch.Tensor],
        biases: Sequence[torch.Tensor],
        *,
        activation: str,
        optimizer: torch.optim.Optimizer,
        loss: str = "cross_entropy",
    ) -> None:
        valid = sorted([*_FN, *_NATIVE])
        if activation not in valid:
            raise ValueError(f"tuned backprop: activation {activation!r}; valid: {valid}")
        if loss not in LOSSES:
            raise ValueError(f"tuned backprop: loss {loss!r}; valid: {list(LOSSES)}")
        self.W, self.b = list(weights), list(biases)
        self.L = len(self.W)
        self.activation, self.optimizer, self.loss = activation, optimizer, loss
        self._bufs: dict[int, tuple[list[torch.Tensor], ...]] = {}
        self._steps: dict[int, tuple[list[Callable[[], None]], list[Callable[[], None]]]] = {}
        for p in [*self.W, *self.b]:
            p.grad = torch.zeros_like(p)

    def _buffers(self, batch: int) -> tuple[list[torch.Tensor], ...]:
        bufs = self._bufs.get(batch)
        if bufs is None:
            sizes = [w.shape[0] for w in self.W]  # n_1 … n_L
            z = [self.W[0].new_empty(batch, n) for n in sizes]
            a = [self.W[0].new_empty(batch, n) for n in sizes[:-1]]
            d = [self.W[0].new_empty(batch, n) for n in sizes]
            act, name = get_activation(self.activation), self.activation
            sigma = [
                act.into_step(zl, al) if name in _NATIVE else functools.partial(_FN[name], zl, al)
                for zl, al in zip(z, a, strict=False)
            ]
            vjps = [
                act.vjp_step(dl, zl, al)
                if name == "gelu"
                else functools.partial(_VJP[name], dl, al, zl)
                for dl, zl, al in zip(d, z, a, strict=False)
            ]
            bufs = self._bufs[batch] = (z, a, d)
            self._steps[batch] = (sigma, vjps)
        return bufs

    @torch.no_grad()
    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        """The output z_L (a view of this batch size's buffer: copy it to keep it)."""
        z, a, _ = self._buffers(x0.shape[0])
        sigma, _ = self._steps[x0.shape[0]]
        for l in range(self.L):
            _mm_t(x0 if l == 0 else a[l - 1], self.W[l], self.b[l], z[l])
            if l < self.L - 1:
                sigma[l]()
        return z[-1]

    @torch.no_grad()
    def update(self, x0: torch.Tensor, y: torch.Tensor) -> None:
        """One weight update on the batch (x0 [B, n_0], y [B, n_L]: one-hot or soft targets
        for cross-entropy, the target output for sse)."""
        W, b, L = self.W, self.b, self.L
        batch = x0.shape[0]
        out = self.forward(x0)
        _, a, d = self._bufs[batch]
        _, vjps = self._steps[batch]
        if self.loss == "cross_entropy":  # δ_L = (y − softmax(z_L) Σ y) / B
            torch.softmax(out, -1, out=d[-1])
            d[-1].mul_(y.sum(-1, keepdim=True)).sub_(y).mul_(-1.0 / batch)
        else:  # δ_L = y − z_L
            torch.sub(y, out, out=d[-1])
        for l in range(L - 1, -1, -1):
            _grad_w(d[l], x0 if l == 0 else a[l - 1], W[l].grad)  # type: ignore[arg-type]
            torch.sum(d[l], 0, out=b[l].grad).neg_()  # type: ignore[call-overload]
            if l > 0:  # δ_{l−1} = (δ_l W_l) ⊙ σ'(z_{l−1})
                _mm_t(d[l], W[l].t(), None, d[l - 1])
                vjps[l - 1]()
        self.optimizer.step()
