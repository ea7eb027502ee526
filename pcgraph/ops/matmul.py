"""The matrix products of the inference loop, each on the CPU library a fixed size rule picks.

torch sends a float32 ``torch.mm`` on the CPU to MKL; oneDNN (also inside every x86 torch build)
can run the same product much faster or slower, depending on the processor. Measured with torch
2.13, float32, one thread (µs):

| product (B × in → out) | AVX-512 EPYC: MKL | oneDNN | AVX2 EPYC: MKL | oneDNN |
|---|---|---|---|---|
| 64 × 128 → 128    |  30 |  32 |   28 |   81 |
| 256 × 128 → 128   | 128 |  57 |  129 |  172 |
| 256 × 784 → 128   | 603 | 322 |  657 |  688 |
| 1024 × 784 → 128  |     |     | 3275 | 3447 |

No fixed size is right on both. By default (``PCGRAPH_CPU_MATMUL=size``) a fixed, documented
rule decides: on a CPU where torch's kernels use AVX-512
(``torch.backends.cpu.get_cpu_capability()``), a product of at least :data:`ONEDNN_MIN_MACS`
multiply-adds (B·in·out; the crossover on the AVX-512 machine) runs on oneDNN, a smaller one on
MKL; on any other CPU every product runs on MKL. On the AVX2 machine MKL won every product of
the inference loop at 2 threads (2026-12-07, µs, MKL / oneDNN: 300 × 256 → 256 forward 340 /
361, message 317 / 369, weight gradient 334 / 580; 300 × 784 → 256 weight gradient
996 / 1200), and a hybrid-init update of the 784-256×4-10 MLP at T = 2 ran in 0.85× the time
with every product on MKL. The choice depends on the shapes and the processor only, so the same
seed on the same machine gives bit-identical numbers in every run.
``PCGRAPH_CPU_MATMUL=mkl`` or ``onednn`` forces one library.

``PCGRAPH_CPU_MATMUL=auto`` (opt-in) times instead the first product of each shape (kind, B, in,
out, thread count) on both libraries, a few calls each, and uses the faster from then on (a
bounded cache per process; :func:`choices` lists them); products below
:data:`MEASURE_MIN_MACS` multiply-adds stay on MKL without timing. Two runs may then pick
differently for a shape where the two are within noise, and their products (and everything
trained on them) differ by float32 rounding; ``torch.use_deterministic_algorithms(True)`` turns
the timing off again. Both libraries compute the same products up to float32 rounding (checked
in ``tests/test_matmul.py``).

float64, CUDA, autograd and ``torch.compile`` products, builds without oneDNN and everything
while pcgraph's fast paths are off (``PCGRAPH_FAST=0``, :func:`pcgraph.fast_paths`) stay on
torch's public ops (``torch.mm``/``torch.addmm``/``torch.nn.functional.linear``): the oneDNN op
is then never called, not even probed.

Shapes: s [B, in], W [out, in], b [out], δ [B, out].
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, Literal

import torch

from pcgraph import fast
from pcgraph.cache import BoundedCache
from pcgraph.errors import ConfigError

__all__ = [
    "MEASURE_MIN_MACS",
    "ONEDNN_MIN_MACS",
    "Kind",
    "choices",
    "dense",
    "faster",
    "linear",
    "linear_grad",
    "linear_vjp",
    "onednn_linear_op",
    "prefer_onednn",
    "use_onednn",
]

# B·in·out from which the fixed size rule sends a product to oneDNN (the crossover measured on
# the AVX-512 machine lies between 1 M and 4 M)
ONEDNN_MIN_MACS = 1 << 21
# below it, MKL without measuring: oneDNN lost by 1.1–3× at 1 M on both machines
MEASURE_MIN_MACS = 1 << 20

Kind = Literal["forward", "vjp", "grad"]
_MODES = ("auto", "size", "mkl", "onednn")


def _onednn_op() -> Callable[..., torch.Tensor] | None:
    if not torch.backends.mkldnn.is_available():
        return None
    op: Any = getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    if op is None:  # pragma: no cover - builds without the op
        return None
    # float32 whatever torch's default dtype (the op has no float64 kernel: a probe run under
    # set_default_dtype(float64) would fail and leave every later float32 product on MKL)
    f32 = torch.float32
    try:  # one tiny call: the op exists and computes s Wᵀ + b
        s, w, b = (
            torch.ones(2, 3, dtype=f32),
            torch.ones(4, 3, dtype=f32),
            torch.zeros(4, dtype=f32),
        )
        if not torch.equal(op(s, w, b, "none", [], ""), torch.full((2, 4), 3.0, dtype=f32)):
            return None
    except (RuntimeError, TypeError):  # pragma: no cover - op present but unusable
        return None
    return op


def _mode() -> str:
    mode = os.environ.get("PCGRAPH_CPU_MATMUL", "size").strip().lower()
    if mode not in _MODES:
        raise ConfigError(
            f"PCGRAPH_CPU_MATMUL={mode!r} is not one of {', '.join(_MODES)}; unset it for the "
            "fixed size rule (the default), or set auto to time both libraries per shape"
        )
    return mode


_MODE = _mode()
# whether torch's CPU kernels run AVX-512 here: the size rule sends large products to oneDNN
# only then (fixed per machine; no timing)
_AVX512 = torch.backends.cpu.get_cpu_capability().upper().startswith("AVX512")
_LINEAR: Callable[..., torch.Tensor] | None = None
_PROBED = False  # whether _LINEAR was looked for (on first use with the fast paths on)
_CHOICES: BoundedCache[tuple[str, int, int, int, int], bool] = BoundedCache(512)


def _op() -> Callable[..., torch.Tensor] | None:
    """oneDNN's linear op where products may go to it, else None. The gate of this module's
    fast path: with pcgraph's fast paths off (:func:`pcgraph.fast.enabled`) None, and every
    product is the reference, torch's public ``mm``/``addmm``/``linear`` (the caller's)."""
    global _LINEAR, _PROBED
    if not fast.enabled():
        return None
    if not _PROBED:
        _LINEAR = None if _MODE == "mkl" else _onednn_op()
        _PROBED = True
    return _LINEAR


def faster(a: Callable[[], object], b: Callable[[], object], *, calls: int = 5) -> bool:
    """Whether ``b`` is faster than ``a``: two warm-up calls each, then ``calls`` rounds that
    time one call of each in alternating order; the minima are compared (the least disturbed
    call of each, so that a busy moment hurts neither side more)."""
    for _ in range(2):
        a()
        b()
    best_a = best_b = float("inf")
    for r in range(calls):
        for first in (a, b) if r % 2 == 0 else (b, a):
            t0 = time.perf_counter()
            first()
            dt = time.perf_counter() - t0
            if first is a:
                best_a = min(best_a, dt)
            else:
                best_b = min(best_b, dt)
    return best_b < best_a


def _measure(kind: Kind, m: int, k: int, n: int) -> bool:
    """Time MKL against oneDNN on random operands of this product's shape and layout."""
    op = _op()
    assert op is not None
    g = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:  # float32, the only products this choice is for
        return torch.randn(*shape, generator=g, dtype=torch.float32)

    w = rand(n, k)  # W [out, in]
    if kind == "forward":  # s [m, k] Wᵀ
        s, out = rand(m, k), torch.empty(m, n, dtype=torch.float32)
        return faster(lambda: torch.mm(s, w.t(), out=out), lambda: op(s, w, None, "none", [], ""))
    if kind == "vjp":  # δ [m, n] W
        d, out = rand(m, n), torch.empty(m, k, dtype=torch.float32)
        return faster(lambda: torch.mm(d, w, out=out), lambda: op(d, w.t(), None, "none", [], ""))
    d, s = rand(m, n), rand(m, k)  # δᵀ s
    return faster(
        lambda: torch.addmm(w, d.t(), s, beta=0, alpha=-1, out=w),
        lambda: op(d.t(), s.t(), None, "none", [], ""),
    )


def prefer_onednn(kind: Kind, m: int, k: int, n: int) -> bool:
    """Whether a float32 CPU product of this kind and shape runs on oneDNN (see the module
    docstring): ``forward`` s Wᵀ and ``vjp`` δ W with s [m, k], δ [m, n], W [n, k]; ``grad``
    δᵀ s with δ [m, n], s [m, k] (the batch m is the contracted dimension)."""
    if _op() is None:
        return False
    macs = m * k * n
    if _MODE in ("onednn", "mkl"):
        return _MODE == "onednn"
    if _MODE == "size" or torch.are_deterministic_algorithms_enabled():
        return _AVX512 and macs >= ONEDNN_MIN_MACS
    if macs < MEASURE_MIN_MACS:
        return False
    key = (kind, m, k, n, torch.get_num_threads())
    found = _CHOICES.get(key)
    if found is None:
        with torch.no_grad():
            found = _CHOICES.put(key, _measure(kind, m, k, n))
    return found


def choices() -> dict[tuple[str, int, int, int, int], bool]:
    """The measured choices so far: (kind, m, k, n, threads) → whether oneDNN won."""
    return dict(_CHOICES.items())


def use_onednn(a: torch.Tensor, kind: Kind, m: int, k: int, n: int) -> bool:
    """Whether a product with operand ``a`` (see :func:`prefer_onednn` for the shape) goes to
    oneDNN."""
    return (
        a.dtype == torch.float32
        and a.device.type == "cpu"
        and not torch.is_grad_enabled()  # the op has no autograd formula
        and not torch.compiler.is_compiling()  # nor an inductor lowering for plain weights
        and prefer_onednn(kind, m, k, n)  # (False while the fast paths are off)
    )


def onednn_linear_op() -> Callable[..., torch.Tensor] | None:
    """oneDNN's linear product ``op(s, W, b, "none", [], "")`` = s Wᵀ + b, or None where this
    torch build has none, with ``PCGRAPH_CPU_MATMUL=mkl`` and while the fast paths are off."""
    return _op()


def dense(w: torch.Tensor) -> bool:
    """oneDNN's weight operand must be row- or column-major: a strided view (a node's columns
    of the flat state, transposed) sends it down a reference path ~1000× slower."""
    rows, cols = w.shape
    return w.stride() in ((cols, 1), (1, rows))


def linear(s: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor | None:
    """s Wᵀ + b by oneDNN, or None when torch's own kernel is the choice (the reference:
    ``torch.addmm(b, s, W.t())``)."""
    op = _op()
    if op is None or not dense(w) or not use_onednn(s, "forward", s.shape[0], *w.shape[::-1]):
        return None
    return op(s, w, b, "none", [], "")


def linear_vjp(delta: torch.Tensor, w: torch.Tensor) -> torch.Tensor | None:
    """δ W (the message to the source) by oneDNN, or None (see :func:`linear`; the reference
    is ``torch.mm(δ, W)``)."""
    op = _op()
    if op is None or not dense(w) or not use_onednn(delta, "vjp", delta.shape[0], *w.shape[::-1]):
        return None
    return op(delta, w.t(), None, "none", [], "")


def linear_grad(delta: torch.Tensor, s: torch.Tensor) -> torch.Tensor | None:
    """δᵀ s (minus ∂E/∂W) by oneDNN, or None (see :func:`linear`; the reference is
    ``torch.mm(δᵀ, s)``)."""
    op = _op()
    if op is None or not use_onednn(s, "grad", s.shape[0], s.shape[1], delta.shape[1]):
        return None
    if not dense(s):  # a node's columns of the flat state: one copy, far cheaper than the
        s = s.contiguous()  # reference path
    return op(delta.t(), s.t(), None, "none", [], "")
