"""The matrix products of the inference loop, each on the CPU library that runs it fastest.

torch sends a float32 ``torch.mm`` on the CPU to MKL. On AMD processors MKL does not take its
fastest code paths, and oneDNN (also inside every x86 torch build) runs the same products
1.5–2.5× faster; oneDNN has a fixed cost of ~20 µs per call, so MKL stays faster for small
products. Measured on a 2-core AMD EPYC (AVX-512) VM, torch 2.13, float32, 1 thread (µs):

| product (B × in → out) | MKL | oneDNN |
|---|---|---|
| 64 × 128 → 128    |  30 |  32 |
| 256 × 128 → 128   | 128 |  57 |
| 256 × 784 → 128   | 603 | 322 |
| 1024 × 256 → 256  | 1467 | 681 |

So a product goes to oneDNN when it is float32 on the CPU and has at least
:data:`ONEDNN_MIN_MACS` multiply-adds; everything else (float64, CUDA, small products, builds
without oneDNN) uses torch's own kernels. ``PCGRAPH_CPU_MATMUL=mkl`` (or ``onednn``) forces one.
Both compute the same float32 products up to rounding (checked in ``tests/test_matmul.py``).

Shapes: s [B, in], W [out, in], b [out], δ [B, out].
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch

__all__ = [
    "ONEDNN_MIN_MACS",
    "dense",
    "linear",
    "linear_grad",
    "linear_vjp",
    "onednn_linear_op",
    "use_onednn",
]

# B·in·out from which oneDNN wins (the crossover measured above lies between 1 M and 4 M)
ONEDNN_MIN_MACS = 1 << 21


def _onednn_op() -> Callable[..., torch.Tensor] | None:
    if not torch.backends.mkldnn.is_available():
        return None
    op: Any = getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    if op is None:  # pragma: no cover - builds without the op
        return None
    try:  # one tiny call: the op exists and computes s Wᵀ + b
        s, w, b = torch.ones(2, 3), torch.ones(4, 3), torch.zeros(4)
        if not torch.equal(op(s, w, b, "none", [], ""), torch.full((2, 4), 3.0)):
            return None
    except (RuntimeError, TypeError):  # pragma: no cover - op present but unusable
        return None
    return op


_MODE = os.environ.get("PCGRAPH_CPU_MATMUL", "auto").strip().lower()
_LINEAR = None if _MODE == "mkl" else _onednn_op()


def use_onednn(a: torch.Tensor, macs: int) -> bool:
    """Whether a product with operand ``a`` and ``macs`` multiply-adds goes to oneDNN."""
    return (
        _LINEAR is not None
        and a.dtype == torch.float32
        and a.device.type == "cpu"
        and not torch.is_grad_enabled()  # the op has no autograd formula
        and not torch.compiler.is_compiling()  # nor an inductor lowering for plain weights
        and (_MODE == "onednn" or macs >= ONEDNN_MIN_MACS)
    )


def onednn_linear_op() -> Callable[..., torch.Tensor] | None:
    """oneDNN's linear product ``op(s, W, b, "none", [], "")`` = s Wᵀ + b, or None where this
    torch build has none (or ``PCGRAPH_CPU_MATMUL=mkl``)."""
    return _LINEAR


def dense(w: torch.Tensor) -> bool:
    """oneDNN's weight operand must be row- or column-major: a strided view (a node's columns
    of the flat state, transposed) sends it down a reference path ~1000× slower."""
    rows, cols = w.shape
    return w.stride() in ((cols, 1), (1, rows))


def linear(s: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor | None:
    """s Wᵀ + b by oneDNN, or None when torch's own kernel is the faster choice."""
    if _LINEAR is None or not use_onednn(s, s.shape[0] * w.shape[0] * w.shape[1]) or not dense(w):
        return None
    return _LINEAR(s, w, b, "none", [], "")


def linear_vjp(delta: torch.Tensor, w: torch.Tensor) -> torch.Tensor | None:
    """δ W (the message to the source) by oneDNN, or None (see :func:`linear`)."""
    if (
        _LINEAR is None
        or not use_onednn(delta, delta.shape[0] * w.shape[0] * w.shape[1])
        or not dense(w)
    ):
        return None
    return _LINEAR(delta, w.t(), None, "none", [], "")


def linear_grad(delta: torch.Tensor, s: torch.Tensor) -> torch.Tensor | None:
    """δᵀ s (minus ∂E/∂W) by oneDNN, or None (see :func:`linear`)."""
    if _LINEAR is None or not use_onednn(s, s.shape[0] * delta.shape[1] * s.shape[1]):
        return None
    if not dense(s):  # a node's columns of the flat state: one copy, far cheaper than the
        s = s.contiguous()  # reference path
    return _LINEAR(delta.t(), s.t(), None, "none", [], "")
