"""The strongest plain-torch floor for one PC weight update of an MLP: a tuned hand-written loop.

Not part of the package; shared by ``bench_peers.py`` and ``bench_step.py``. The loop is written
the way a careful engineer would write one network by hand, so that a comparison with it exposes
any waste in pcgraph's general graph machinery:

- every buffer (states, σ(x), errors, messages, weight gradients) is allocated once per batch
  size and written in place (``out=`` and ``*_`` ops);
- σ(x_l) is computed once per node and step, and σ'(x_l) comes from it where σ' is a function of
  σ (tanh, sigmoid, relu), GELU's from x; where pcgraph's C kernels
  are built, a layer's whole neuron step x ← x − γ (ε − σ' ⊙ m) is one native pass, the same
  fused step pcgraph takes (:func:`pcgraph.ops.native.bind_sgd_step`);
- tanh and GELU run on the fastest float32 CPU kernels available, pcgraph's C kernels
  (:mod:`pcgraph.ops.native`, through ``Activation.into_step`` / ``vjp_step``, which fall back
  to torch's where they are not built): a hand-tuned loop would use the fastest kernel at hand,
  and a floor with slower kernels would credit pcgraph's machinery with what its kernels save;
- the forward sweep leaves every hidden error at exactly 0 and σ(x) known, and the error then
  spreads back one layer per step: step t computes only the messages, σ and errors of the
  layers it has reached, and a layer it has not reached by T gets a zero weight gradient
  without a product (what pcgraph's ``ClampPlan.quiet_schedule`` does for any graph);
- the first layer's prediction W_1 x + b_1 (clamped input) is computed once per batch;
- each weight gradient is one product straight into ``.grad`` (−δᵀ σ with α = −1, no
  transposed copy of δ, no separate negation);
- no energies, norms or traces are computed (nobody asked for them).

The rule (paper Eqs. 1, 3, 4), for x_0 → x_1 → … → x_L with x_0 (input) and x_L (target)
clamped and μ_l = W_l σ(x_{l−1}) + b_l (σ = identity on the input):

- forward init x_l = μ_l, l = 1 … L−1;
- T steps of x_l ← x_l − γ (ε_l − σ'(x_l) ⊙ (δ_{l+1} W_{l+1})), synchronous, where ε_l = x_l − μ_l
  and δ = ε (gaussian) or δ_L = x_L − softmax(μ_L) Σ x_L (cross-entropy output);
- ∂E/∂W_l = −δ_lᵀ σ(x_{l−1}), ∂E/∂b_l = −Σ_batch δ_l at x(T); one optimizer step.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch

from pcgraph.activations import get_activation
from pcgraph.ops import native
from pcgraph.ops.matmul import faster

Vjp = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None]
Step = Callable[[], None]


def _relu_(x: torch.Tensor, out: torch.Tensor) -> None:
    torch.clamp(x, min=0.0, out=out)


def _sigmoid_(x: torch.Tensor, out: torch.Tensor) -> None:
    torch.sigmoid(x, out=out)


_aten = torch.ops.aten
# σ(x) into ``out``, by hand, for the activations without a pcgraph C kernel; tanh and GELU run
# on those kernels, bound to the loop's buffers (see TunedMLP._buffers)
SIGMA_INTO: dict[str, Callable[[torch.Tensor, torch.Tensor], None]] = {
    "relu": _relu_,
    "sigmoid": _sigmoid_,
}
NATIVE = ("tanh", "gelu")


# m ← m ⊙ σ'(x) from s = σ(x), for those whose σ' is a function of σ (GELU's: pcgraph's kernel)
def _vjp_tanh(m: torch.Tensor, s: torch.Tensor, x: torch.Tensor) -> None:
    _aten.tanh_backward.grad_input(m, s, grad_input=m)


def _vjp_relu(m: torch.Tensor, s: torch.Tensor, x: torch.Tensor) -> None:
    _aten.threshold_backward.grad_input(m, s, 0, grad_input=m)


def _vjp_sigmoid(m: torch.Tensor, s: torch.Tensor, x: torch.Tensor) -> None:
    _aten.sigmoid_backward.grad_input(m, s, grad_input=m)


VJP_FROM_SIGMA: dict[str, Vjp] = {
    "tanh": _vjp_tanh,
    "relu": _vjp_relu,
    "sigmoid": _vjp_sigmoid,
}


ONEDNN = getattr(torch.ops.mkldnn, "_linear_pointwise", None)
# which library is faster depends on the processor (oneDNN 2× faster than MKL on an AVX-512
# EPYC, 1.1–3× slower on an AVX2 one): the floors time both once per product shape and layout
# and use the faster, as a careful engineer tuning for this machine would
_ONEDNN_WINS: dict[tuple[object, ...], bool] = {}


def prefer_onednn(
    key: tuple[object, ...], mkl: Callable[[], object], onednn: Callable[[], object], macs: int
) -> bool:
    """Whether a float32 CPU product runs on oneDNN: ``mkl`` and ``onednn`` run it each way
    as the caller will (copies included), timed once per ``key`` (kind, shapes, layouts) and
    thread count with pcgraph's own rule (:func:`~pcgraph.ops.matmul.faster`); below 2²⁰
    multiply-adds, or without the op, MKL."""
    if ONEDNN is None or macs < 1 << 20:
        return False
    full = (*key, torch.get_num_threads())
    found = _ONEDNN_WINS.get(full)
    if found is None:
        found = _ONEDNN_WINS[full] = faster(mkl, onednn)
    return found


def cpu_f32(t: torch.Tensor) -> bool:
    return t.device.type == "cpu" and t.dtype == torch.float32


def _mm_t(a: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None, out: torch.Tensor) -> None:
    """out ← a wᵀ (+ bias) on MKL or oneDNN, whichever was faster for this shape (float32 CPU
    products from 2²⁰ multiply-adds; smaller ones always MKL). ``a`` contiguous; ``w`` row- or
    column-major."""

    def mkl() -> None:
        if bias is None:
            torch.mm(a, w.t(), out=out)
        else:
            torch.addmm(bias, a, w.t(), out=out)

    def onednn() -> None:
        out.copy_(ONEDNN(a, w, bias, "none", [], ""))  # type: ignore[misc]

    key = ("linear", a.shape, a.stride(), w.shape, w.stride(), bias is not None)
    if cpu_f32(a) and prefer_onednn(key, mkl, onednn, a.shape[0] * w.shape[0] * w.shape[1]):
        onednn()
    else:
        mkl()


def _grad_w(e: torch.Tensor, s: torch.Tensor, out: torch.Tensor) -> None:
    """out ← −eᵀ s (∂E/∂W) without copying eᵀ: one MKL product with α = −1, β = 0 (the old
    contents, NaNs included, ignored), or oneDNN where it was faster for this shape."""

    def mkl() -> None:
        torch.addmm(out, e.t(), s, beta=0, alpha=-1, out=out)

    def onednn() -> None:
        torch.neg(ONEDNN(e.t(), s.t(), None, "none", [], ""), out=out)  # type: ignore[misc]

    key = ("grad-neg", e.shape, e.stride(), s.shape, s.stride())
    if cpu_f32(e) and prefer_onednn(key, mkl, onednn, e.shape[0] * e.shape[1] * s.shape[1]):
        onednn()
    else:
        mkl()


class TunedMLP:
    """One PC weight update of an MLP, by hand (see the module docstring).

    Args:
        weights, biases: W_l [n_l, n_{l−1}] and b_l [n_l], l = 1 … L (leaf tensors; their
            ``.grad`` is written in place each update).
        activation: σ of the hidden nodes (tanh, relu, gelu, sigmoid).
        T: inference steps per update; lr_neurons: γ.
        optimizer: over ``weights`` and ``biases``.
        output_energy: ``gaussian`` or ``cross_entropy``.
    """

    def __init__(
        self,
        weights: Sequence[torch.Tensor],
        biases: Sequence[torch.Tensor],
        *,
        activation: str,
        T: int,
        lr_neurons: float,
        optimizer: torch.optim.Optimizer,
        output_energy: str = "gaussian",
    ) -> None:
        valid = sorted([*SIGMA_INTO, *NATIVE])
        if activation not in valid:
            raise ValueError(f"tuned loop: activation {activation!r}; valid: {valid}")
        self.W, self.b = list(weights), list(biases)
        self.L = len(self.W)
        self.activation = activation
        self.T, self.lr, self.optimizer = T, lr_neurons, optimizer
        self.ce = output_energy == "cross_entropy"
        self._bufs: dict[int, dict[str, list[torch.Tensor]]] = {}
        self._bound: dict[int, tuple[list[Step], list[Step], list[native.Bound | None]]] = {}
        for p in [*self.W, *self.b]:
            p.grad = torch.zeros_like(p)

    def _buffers(self, batch: int) -> dict[str, list[torch.Tensor]]:
        buf = self._bufs.get(batch)
        if buf is None:
            W = self.W

            def new(n: int) -> torch.Tensor:
                return W[0].new_empty(batch, n)

            sizes = [W[0].shape[1], *[w.shape[0] for w in W]]  # n_0 … n_L
            hidden = range(1, self.L)
            buf = {
                "x": [new(sizes[l]) for l in hidden],  # x_1 … x_{L−1}
                "s": [new(sizes[l]) for l in hidden],  # σ(x_l)
                "e": [new(sizes[l]) for l in range(1, self.L + 1)],  # ε_1 … ε_L
                "m": [new(sizes[l]) for l in hidden],  # messages to x_l
                "mu1": [new(sizes[1])],  # W_1 x_0 + b_1, fixed per batch
            }
            # tanh, GELU and GELU's vjp on these fixed buffers with the C kernels' calls bound
            # once (pcgraph's into_step / vjp_step: no per-call plan lookup), as a loop written
            # for one network would call them; the rest by hand
            act, name = get_activation(self.activation), self.activation
            sigma = [
                act.into_step(x, s) if name in NATIVE else functools.partial(SIGMA_INTO[name], x, s)
                for x, s in zip(buf["x"], buf["s"], strict=True)
            ]
            vjps = [
                act.vjp_step(m, x, s)
                if name == "gelu"
                else functools.partial(VJP_FROM_SIGMA[name], m, s, x)
                for m, x, s in zip(buf["m"], buf["x"], buf["s"], strict=True)
            ]
            # x_l ← x_l − γ (ε_l − σ'(x_l) ⊙ m_l) in one native pass where it is built (the
            # same fused step pcgraph takes), else the vjp, subtraction and update above
            sgd = [
                native.bind_sgd_step(self.activation, x, s, e, m, self.lr)
                for x, s, e, m in zip(buf["x"], buf["s"], buf["e"], buf["m"], strict=False)
            ]
            self._bound[batch] = (sigma, vjps, sgd)
            self._bufs[batch] = buf
        return buf

    @torch.no_grad()
    def update(self, x0: torch.Tensor, y: torch.Tensor) -> None:
        """One weight update on the batch (x0 [B, n_0], y [B, n_L])."""
        W, b, L, lr = self.W, self.b, self.L, self.lr
        buf = self._buffers(x0.shape[0])
        sigma, vjps, sgd = self._bound[x0.shape[0]]
        xs, ss, es, ms, mu1 = buf["x"], buf["s"], buf["e"], buf["m"], buf["mu1"][0]
        # forward init: x_l = μ_l, σ(x_l) once; hidden errors are exactly 0
        _mm_t(x0, W[0], b[0], mu1)
        xs[0].copy_(mu1)
        sigma[0]()
        for l in range(1, L - 1):
            _mm_t(ss[l - 1], W[l], b[l], xs[l])
            sigma[l]()
        for l in range(L - 1):
            es[l].zero_()
        self._output_error(ss[L - 2], y, es[L - 1])
        for t in range(self.T):
            # the error spreads back one layer per step from the output: at step t only
            # ε_k with k ≥ L − 1 − t are non-zero, and only x_l with l ≥ lo move
            lo = max(0, L - 2 - t)
            # ∂E/∂x_l = ε_l − σ'(x_l) ⊙ (δ_{l+1} W_{l+1}); x_l ← x_l − γ ∂E/∂x_l (synchronous:
            # all messages from the same errors, then every state moves)
            for l in range(lo, L - 1):
                _mm_t(es[l + 1], W[l + 1].t(), None, ms[l])
                fused = sgd[l]
                if fused is None or not fused():
                    vjps[l]()
                    ms[l].sub_(es[l])
                    xs[l].add_(ms[l], alpha=lr)
            # errors at the new states, σ(x_l) once per node
            for l in range(lo, L - 1):
                sigma[l]()
            if lo == 0:
                torch.sub(xs[0], mu1, out=es[0])
            for l in range(max(1, lo), L - 1):
                _mm_t(ss[l - 1], W[l], b[l], es[l])
                torch.sub(xs[l], es[l], out=es[l])
            self._output_error(ss[L - 2], y, es[L - 1])
        # ∂E/∂θ at x(T); layers whose error is still 0 have a zero gradient
        quiet = max(0, L - 1 - self.T)
        for l in range(quiet):
            W[l].grad.zero_()  # type: ignore[union-attr]
            b[l].grad.zero_()  # type: ignore[union-attr]
        for l in range(quiet, L):
            _grad_w(es[l], x0 if l == 0 else ss[l - 1], W[l].grad)  # type: ignore[arg-type]
        for l in range(quiet, L):
            torch.sum(es[l], 0, out=b[l].grad).neg_()  # type: ignore[call-overload]
        self.optimizer.step()

    def _output_error(self, s_prev: torch.Tensor, y: torch.Tensor, out: torch.Tensor) -> None:
        _mm_t(s_prev, self.W[-1], self.b[-1], out)
        if self.ce:  # δ_L = y − softmax(μ_L) Σ y
            torch.softmax(out, -1, out=out)
            out.mul_(y.sum(-1, keepdim=True))
        torch.sub(y, out, out=out)
