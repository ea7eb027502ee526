"""The native float32 activation kernels as ``torch.library`` custom ops, with fake (meta)
implementations, so that ``torch.compile`` traces them into its graph as single ops instead of
falling back to torch's kernels (a ctypes call cannot be traced).

- ``pcgraph::tanh_into(x, out)``: out ← tanh(x);
- ``pcgraph::gelu_into(x, out)``: out ← x Φ(x) (exact GELU);
- ``pcgraph::gelu_vjp_(g, x)``: g ← g ⊙ GELU'(x).

Each runs :mod:`pcgraph.ops.native`'s kernel where it applies (float32 CPU, the fast paths on,
the library built) and torch's reference kernel otherwise, so a compiled step computes what
the eager one computes. :data:`CALLS` counts the calls per op (the benchmark and the tests read
it to see that a compiled step runs them).
"""

from __future__ import annotations

from collections import Counter

import torch

from pcgraph.ops import native

__all__ = ["CALLS", "gelu_into", "gelu_vjp_", "tanh_into"]

CALLS: Counter[str] = Counter()


@torch.library.custom_op("pcgraph::tanh_into", mutates_args=("out",))
def tanh_into(x: torch.Tensor, out: torch.Tensor) -> None:
    """out ← tanh(x); reference ``torch.tanh``."""
    CALLS["tanh_into"] += 1
    if not native.tanh_into(x, out):
        torch.tanh(x, out=out)


@tanh_into.register_fake
def _(x: torch.Tensor, out: torch.Tensor) -> None:
    return None


@torch.library.custom_op("pcgraph::gelu_into", mutates_args=("out",))
def gelu_into(x: torch.Tensor, out: torch.Tensor) -> None:
    """out ← GELU(x) (exact, erf form); reference ``torch.nn.functional.gelu``."""
    CALLS["gelu_into"] += 1
    if not native.gelu_into(x, out):
        out.copy_(torch.nn.functional.gelu(x.contiguous()))


@gelu_into.register_fake
def _(x: torch.Tensor, out: torch.Tensor) -> None:
    return None


@torch.library.custom_op("pcgraph::gelu_vjp_", mutates_args=("g",))
def gelu_vjp_(g: torch.Tensor, x: torch.Tensor) -> None:
    """g ← g ⊙ GELU'(x); reference ``aten.gelu_backward``."""
    CALLS["gelu_vjp_"] += 1
    if not native.gelu_vjp_(g, x):
        g.copy_(torch.ops.aten.gelu_backward(g.contiguous(), x.contiguous()))


@gelu_vjp_.register_fake
def _(g: torch.Tensor, x: torch.Tensor) -> None:
    return None
