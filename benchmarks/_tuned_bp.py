"""The strongest plain-torch floor for one backprop update of an MLP: a tuned hand-written step.

Not part of the package; shared by ``bench_tta.py``, ``bench_peers.py`` and ``bench_step.py``.
An autograd step through ``nn.Linear`` runs every product on torch's default CPU library (MKL),
which on an AVX-512 processor is up to 2× slower than oneDNN for the products of these MLPs; a
PC loop that picks the faster library would then beat a backprop that nobody tuned. This step
is written as :class:`_tuned.TunedMLP` is, for backprop:

- every product runs on MKL or oneDNN, whichever was faster for its shape and layout on this
  machine (timed once per shape with pcgraph's :func:`~pcgraph.ops.matmul.faster`, each side
  as this step runs it: MKL into a preallocated buffer, oneDNN as the fresh tensor it returns,
  used as it is, not copied); :meth:`TunedBackprop.warm_up` makes those choices off the clock;
- every other buffer (activations a, back-propagated gradients g where MKL writes them) is
  allocated once per batch size and written in place; each activation is computed once, its
  derivative from z (GELU) or from a (tanh, sigmoid, relu), on pcgraph's C kernels where they
  are built (the fastest at hand, as in the tuned PC loop);
- the step carries g = ∂loss/∂z, so each weight gradient is one product gᵀ a and each bias
  gradient one sum, with no negation; no gradient for the data.

The rule, for z_l = W_l a_{l−1} + b_l, a_l = σ(z_l), a_0 = x, logits (or the output) z_L:

- cross-entropy (mean over the batch, ``F.cross_entropy`` with soft or one-hot targets y):
  g_L = (softmax(z_L) Σ y − y) / B;
- summed squared error ½ Σ (z_L − y)²: g_L = z_L − y;
- g_{l−1} = (g_l W_l) ⊙ σ'(z_{l−1}); ∂loss/∂W_l = g_lᵀ a_{l−1}, ∂loss/∂b_l = Σ_batch g_l;
  one optimizer step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from _tuned import NATIVE, ONEDNN, SIGMA_INTO, VJP_FROM_SIGMA, cpu_f32, prefer_onednn

from pcgraph.activations import get_activation

LOSSES = ("cross_entropy", "sse")


def linear(
    a: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, out: torch.Tensor
) -> torch.Tensor:
    """a wᵀ (+ b): oneDNN's fresh tensor where it is faster here, else MKL into ``out``."""

    def mkl() -> None:
        if b is None:
            torch.mm(a, w.t(), out=out)
        else:
            torch.addmm(b, a, w.t(), out=out)

    def onednn() -> torch.Tensor:
        return ONEDNN(a, w, b, "none", [], "")  # type: ignore[misc]

    key = ("linear", a.shape, a.stride(), w.shape, w.stride(), b is not None)
    if cpu_f32(a) and prefer_onednn(key, mkl, onednn, a.shape[0] * w.shape[0] * w.shape[1]):
        return onednn()
    mkl()
    return out


def weight_grad(g: torch.Tensor, a: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """gᵀ a (∂loss/∂W): oneDNN's fresh tensor where it is faster here, else MKL into ``out``."""

    def mkl() -> None:
        torch.mm(g.t(), a, out=out)

    def onednn() -> torch.Tensor:
        return ONEDNN(g.t(), a.t(), None, "none", [], "")  # type: ignore[misc]

    key = ("grad", g.shape, g.stride(), a.shape, a.stride())
    if cpu_f32(g) and prefer_onednn(key, mkl, onednn, g.shape[0] * g.shape[1] * a.shape[1]):
        return onednn()
    mkl()
    return out


@dataclasses.dataclass
class _Batch:
    """The buffers of one batch size."""

    z: list[torch.Tensor]  # z_1 … z_L where MKL writes them (oneDNN returns its own)
    a: list[torch.Tensor]  # σ(z_1) … σ(z_{L−1})
    g: list[torch.Tensor]  # ∂loss/∂z_1 … ∂loss/∂z_L where MKL writes them
    zs: list[torch.Tensor]  # the z of the last forward pass (buffers or oneDNN's tensors)


class TunedBackprop:
    """One backprop update of an MLP, by hand (see the module docstring).

    Args:
        weights, biases: W_l [n_l, n_{l−1}] and b_l [n_l], l = 1 … L (leaf tensors; their
            ``.grad`` is written each update).
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
        valid = sorted([*SIGMA_INTO, *NATIVE])
        if activation not in valid:
            raise ValueError(f"tuned backprop: activation {activation!r}; valid: {valid}")
        if loss not in LOSSES:
            raise ValueError(f"tuned backprop: loss {loss!r}; valid: {list(LOSSES)}")
        self.W, self.b = list(weights), list(biases)
        self.L = len(self.W)
        self.act = get_activation(activation)
        self.activation, self.optimizer, self.loss = activation, optimizer, loss
        self._batches: dict[int, _Batch] = {}
        for p in [*self.W, *self.b]:
            p.grad = torch.zeros_like(p)

    def _batch(self, size: int) -> _Batch:
        found = self._batches.get(size)
        if found is None:
            sizes = [w.shape[0] for w in self.W]  # n_1 … n_L
            w0 = self.W[0]
            found = self._batches[size] = _Batch(
                z=[w0.new_empty(size, n) for n in sizes],
                a=[w0.new_empty(size, n) for n in sizes[:-1]],
                g=[w0.new_empty(size, n) for n in sizes],
                zs=[],
            )
        return found

    def _sigma(self, z: torch.Tensor, out: torch.Tensor) -> None:
        if self.activation in NATIVE:
            self.act.apply_into(z, out)  # pcgraph's C kernel where it applies
        else:
            SIGMA_INTO[self.activation](z, out)

    def _vjp(self, g: torch.Tensor, z: torch.Tensor, a: torch.Tensor) -> None:
        """g ← g ⊙ σ'(z), with a = σ(z)."""
        if self.activation == "gelu":
            self.act.vjp_(g, z, a)
        else:
            VJP_FROM_SIGMA[self.activation](g, a, z)

    @torch.no_grad()
    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        """The output z_L (this batch size's buffer or a fresh tensor: copy it to keep it)."""
        buf = self._batch(x0.shape[0])
        buf.zs = []
        for l in range(self.L):
            z = linear(x0 if l == 0 else buf.a[l - 1], self.W[l], self.b[l], buf.z[l])
            buf.zs.append(z)
            if l < self.L - 1:
                self._sigma(z, buf.a[l])
        return buf.zs[-1]

    @torch.no_grad()
    def gradients(self, x0: torch.Tensor, y: torch.Tensor) -> None:
        """Forward and backward: ∂loss/∂θ into (or as) every ``.grad``, no optimizer step."""
        W, b, L = self.W, self.b, self.L
        out = self.forward(x0)
        buf = self._batches[x0.shape[0]]
        g = buf.g[-1]
        if self.loss == "cross_entropy":  # g_L = (softmax(z_L) Σ y − y) / B
            torch.softmax(out, -1, out=g)
            g.mul_(y.sum(-1, keepdim=True)).sub_(y).mul_(1.0 / x0.shape[0])
        else:  # g_L = z_L − y
            torch.sub(out, y, out=g)
        for l in range(L - 1, -1, -1):
            grad = weight_grad(g, x0 if l == 0 else buf.a[l - 1], W[l].grad)  # type: ignore[arg-type]
            if grad is not W[l].grad:
                W[l].grad = grad  # oneDNN's tensor, taken as it is
            torch.sum(g, 0, out=b[l].grad)  # type: ignore[call-overload]
            if l > 0:  # g_{l−1} = (g_l W_l) ⊙ σ'(z_{l−1})
                g = linear(g, W[l].t(), None, buf.g[l - 1])
                self._vjp(g, buf.zs[l - 1], buf.a[l - 1])

    def update(self, x0: torch.Tensor, y: torch.Tensor) -> None:
        """One weight update on the batch (x0 [B, n_0], y [B, n_L]: one-hot or soft targets
        for cross-entropy, the target output for sse)."""
        self.gradients(x0, y)
        self.optimizer.step()

    def warm_up(self, x0: torch.Tensor, y: torch.Tensor) -> None:
        """One forward and backward pass without a step: the per-shape library choices and
        this batch size's buffers are made now, off any clock (the ``.grad`` it leaves is
        overwritten by the next update)."""
        self.gradients(x0, y)
