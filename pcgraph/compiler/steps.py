"""Specialised closures for the common edges of the inference loop, bound once per buffer.

The general step (:class:`pcgraph.compiler.program.InferenceProgram`) walks plans of edges and
asks each kernel for its contribution, which costs a few Python calls and checks per edge and
step. For the edge that dominates real networks, a plain linear edge that is a node's only
parent (prediction) or only child (message), these closures do the same arithmetic with every
choice made in advance: the tensors (views of the reused buffers, the weight and its transposed
view) are captured, and the matrix library (oneDNN or MKL, :mod:`pcgraph.ops.matmul`) is chosen
for the batch size at bind time. They are rebuilt whenever the buffers change or a parameter's
storage does (``p.data = …``); in-place updates (optimizers, ``load_state_dict``) are seen as they
are. The same holds for the forward sweep's products (:func:`forward_step`) and the weight
gradients (:func:`param_grad_step`, :func:`zero_grads_step`), which also check, each call, that
the ``.grad`` tensors they write are still the parameters' own.

Both compute exactly what the general path computes (the same kernels in the same order). They
are fast paths: while they are off (``PCGRAPH_FAST=0``, :func:`pcgraph.fast_paths`) the program
binds none of them and runs the general path, the reference they must equal.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

import torch

from pcgraph.activations import Activation
from pcgraph.ops import matmul, native
from pcgraph.ops.linear_kernel import LinearKernel

__all__ = [
    "Step",
    "copier",
    "copy_all",
    "error_step",
    "forward_step",
    "message_step",
    "param_grad_step",
    "sgd_message_step",
    "without_grad",
    "write_back",
    "zero_grads_step",
    "zeroer",
]

Step = Callable[[], None]


_F = TypeVar("_F", bound=Callable[..., Any])


def without_grad(fn: _F) -> _F:
    """Like ``@torch.no_grad()`` for the per-step methods, which the runners call with grad
    already off thousands of times per second: the context manager is entered only when
    needed (its enter/exit cost more than a small kernel)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if torch.is_grad_enabled():
            with torch.no_grad():
                return fn(*args, **kwargs)
        return fn(*args, **kwargs)

    return cast(_F, wrapper)


def copier(src: torch.Tensor, dst: torch.Tensor) -> Step:
    """A step that copies ``src`` into ``dst``."""

    def copy() -> None:
        dst.copy_(src)

    return copy


def copy_all(dst: list[torch.Tensor], src: list[torch.Tensor]) -> Step:
    """A step that copies each ``src[k]`` into ``dst[k]`` (one foreach kernel)."""

    def copy() -> None:
        torch._foreach_copy_(dst, src)

    return copy


def write_back(dst: list[torch.Tensor], src: list[torch.Tensor]) -> Callable[[], bool | None]:
    """A step that copies each contiguous ``src[k]`` into ``dst[k]``, columns of the state
    that the steps after it do not read: one native call where it is
    built (:func:`pcgraph.ops.native.bind_store_blocks`), which also answers whether every
    value copied is finite; else one foreach kernel (the answer is then None: not known)."""
    native_store = native.bind_store_blocks(dst, src)

    def store() -> bool | None:
        found = None if native_store is None else native_store()
        if found is None:  # no kernel for these tensors, or inside torch.compile
            torch._foreach_copy_(dst, src)
        return found

    return store


def zeroer(t: torch.Tensor) -> Step:
    """A step that zeroes ``t``."""

    def zero() -> None:
        t.zero_()

    return zero


def _weights(kern: LinearKernel) -> tuple[torch.Tensor, torch.Tensor | None]:
    with torch.no_grad():
        return kern.weight.detach(), None if kern.bias is None else kern.bias.detach()


def _prediction(
    kern: LinearKernel, s: torch.Tensor, out: torch.Tensor
) -> tuple[Step, Callable[[], torch.Tensor] | None]:
    """W s + b for a plain linear edge: a step writing it into ``out`` by MKL, and oneDNN's
    product (a new tensor) where it was measured faster for this shape (else None)."""
    w, b = _weights(kern)
    wt = w.t()
    if b is not None:

        def mkl() -> None:
            torch.addmm(b, s, wt, out=out)

    else:

        def mkl() -> None:
            torch.mm(s, wt, out=out)

    onednn = matmul.onednn_linear_op()
    if (
        onednn is None
        or not matmul.dense(w)
        or not matmul.use_onednn(s, "forward", s.shape[0], w.shape[1], w.shape[0])
    ):
        return mkl, None

    def fresh() -> torch.Tensor:
        assert onednn is not None
        return onednn(s, w, b, "none", [], "")

    return mkl, fresh


def forward_step(kern: LinearKernel, s: torch.Tensor, out: torch.Tensor) -> Step:
    """out ← W s + b (a forward sweep's x = μ for a node whose only parent is this edge).

    Shapes: s [B, in] (σ of the source), out [B, out] (a view of the states).
    """
    mkl, fresh = _prediction(kern, s, out)
    if fresh is None:
        return mkl

    def fast() -> None:
        if torch.compiler.is_compiling():  # inductor cannot lower the oneDNN op here
            mkl()
        else:
            out.copy_(fresh())

    return fast


def error_step(kern: LinearKernel, s: torch.Tensor, x: torch.Tensor, out: torch.Tensor) -> Step:
    """ε = x − (W s + b) into ``out`` for a node whose only parent is this edge.

    Shapes: s [B, in] (σ of the source), x and out [B, out].
    """
    mkl, fresh = _prediction(kern, s, out)
    if fresh is None:

        def step() -> None:
            mkl()
            torch.sub(x, out, out=out)

        return step

    def fast() -> None:
        if torch.compiler.is_compiling():  # inductor cannot lower the oneDNN op here
            mkl()
            torch.sub(x, out, out=out)
        else:
            torch.sub(x, fresh(), out=out)

    return fast


def param_grad_step(
    kern: LinearKernel, s: torch.Tensor, delta: torch.Tensor
) -> Callable[[], bool] | None:
    """∂E/∂W = −δᵀ s and ∂E/∂b = −Σ_batch δ written over the existing ``.grad`` tensors (one
    product with α = −1, β = 0: their old contents, NaNs included, are ignored), bound to them.

    The step returns False, writing nothing, once a ``.grad`` is no longer the tensor it was
    bound to (``zero_grad(set_to_none=True)``, a new tensor assigned): the caller then takes
    the general path. None where this does not apply (no contiguous ``.grad`` of the
    parameter's shape yet, a reshaping edge, a product oneDNN runs faster).

    Shapes: s [B, in] (σ of the source), δ [B, out] (the target's).
    """
    w, b = kern.weight, kern.bias
    gw, gb = w.grad, None if b is None else b.grad
    if (
        not kern.plain
        or gw is None
        or gw.shape != w.shape
        or not gw.is_contiguous()
        or (b is not None and (gb is None or gb.shape != b.shape))
        or matmul.use_onednn(s, "grad", s.shape[0], s.shape[1], delta.shape[1])
    ):
        return None
    dt = delta.t()

    def step() -> bool:
        if w.grad is not gw or (b is not None and b.grad is not gb):
            return False
        torch.addmm(gw, dt, s, beta=0, alpha=-1, out=gw)
        if gb is not None:
            torch.sum(delta, 0, out=gb).neg_()
        return True

    return step


def zero_grads_step(params: list[torch.Tensor]) -> Callable[[], bool]:
    """Zero the existing ``.grad`` of ``params`` (an edge whose target's error is exactly 0) in
    one call, bound to those tensors; False, writing nothing, once one was replaced (see
    :func:`param_grad_step`). The ``.grad`` tensors must exist with their parameters' shapes."""
    pairs = [(p, p.grad) for p in params]
    grads = [g for _, g in pairs]
    assert all(g is not None and g.shape == p.shape for p, g in pairs)

    def step() -> bool:
        for p, g in pairs:
            if p.grad is not g:
                return False
        torch._foreach_zero_(grads)  # type: ignore[arg-type]
        return True

    return step


def _message_on_onednn(delta: torch.Tensor, w: torch.Tensor) -> bool:
    """Whether the message δ W of this shape goes to oneDNN (measured faster) rather than MKL."""
    return (
        matmul.onednn_linear_op() is not None
        and matmul.dense(w)
        and matmul.use_onednn(delta, "vjp", delta.shape[0], w.shape[1], w.shape[0])
    )


def message_step(
    kern: LinearKernel,
    delta: torch.Tensor,
    act: Activation | None,
    x: torch.Tensor,
    y: torch.Tensor,
    own: torch.Tensor | None,
    out: torch.Tensor,
) -> Step:
    """∂E/∂x = own − σ'(x) ⊙ (δ W) into ``out`` for a node whose only child is this edge.

    Args:
        delta: the child's δ [B, out]; x, y: the node's state and σ(x) [B, in];
        own: the node's own δ (None for a root: then ∂E/∂x = −σ'(x) ⊙ δ W); out: [B, in] view.
    """
    w, _ = _weights(kern)
    vjp = None if act is None else act.vjp_
    scratch = torch.empty(delta.shape[0], w.shape[1], device=w.device, dtype=w.dtype)
    # on MKL the message lands in the scratch every step: its vjp kernel is bound to it
    bound_vjp = None if act is None else act.vjp_step(scratch, x, y)
    wt = w.t()
    onednn = matmul.onednn_linear_op()
    use_onednn = _message_on_onednn(delta, w)

    def message() -> torch.Tensor:
        if use_onednn and not torch.compiler.is_compiling():
            assert onednn is not None
            return onednn(delta, wt, None, "none", [], "")
        return torch.mm(delta, w, out=scratch)

    def step() -> None:
        m = message()
        if m is scratch:
            if bound_vjp is not None:
                bound_vjp()
        elif vjp is not None:
            vjp(m, x, y)
        if own is not None:
            torch.sub(own, m, out=out)
        else:
            torch.neg(m, out=out)

    return step


def sgd_message_step(
    kern: LinearKernel,
    delta: torch.Tensor,
    act: Activation | None,
    x: torch.Tensor,
    y: torch.Tensor,
    own: torch.Tensor | None,
    lr: float,
) -> Step | None:
    """The whole plain gradient step of a node whose only child is this edge, fused:
    x ← x − γ (own − σ'(x) ⊙ (δ W)), the message by MKL into a scratch and the rest in one
    native pass (:func:`pcgraph.ops.native.bind_sgd_step`), without writing ∂E/∂x. None where
    that does not apply (oneDNN is the faster product here, no native kernel, not float32 on
    the CPU, an activation without the kernel's σ'): then :func:`message_step` and the
    optimizer's update do it.

    Safe inside a synchronous step: the messages of the other nodes read only errors δ and
    their own σ(x), never x of this node, and σ(x) (``y``) is not written here.
    """
    if not (delta.is_cpu and delta.dtype == torch.float32 and native.available()):
        return None  # the kernel is float32 CPU only: allocate nothing in vain (CUDA capture)
    w, _ = _weights(kern)
    if _message_on_onednn(delta, w):
        return None  # the message is a fresh oneDNN tensor each step: nothing to bind to
    scratch = torch.empty(delta.shape[0], w.shape[1], device=w.device, dtype=w.dtype)
    update = native.bind_sgd_step(
        "identity" if act is None else act.name, x, x if act is None else y, own, scratch, lr
    )
    if update is None:
        return None

    def step() -> None:
        torch.mm(delta, w, out=scratch)
        if not update():  # under torch.compile: the same step in torch's kernels
            if act is not None:
                act.vjp_(scratch, x, y)
            if own is not None:
                scratch.sub_(own)  # −∂E/∂x
            x.add_(scratch, alpha=lr)

    return step
