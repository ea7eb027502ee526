"""Node activations σ with their closed-form derivatives σ' (used by the local-gradient path)."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from pcgraph import fast
from pcgraph.names import ACTIVATION_NAMES
from pcgraph.ops import native, native_ops
from pcgraph.registry import Registry

__all__ = ["ACTIVATIONS", "Activation", "get_activation"]

Fn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Activation:
    """An elementwise activation σ and its derivative σ'.

    Attributes:
        name: canonical name.
        fn: σ(x).
        derivative: σ'(x), the elementwise derivative.
        is_identity: True for σ(x) = x (lets the engine skip work).
        fused_vjp: grad ⊙ σ'(x) as one kernel, from x.
        fn_into: σ(x) written into a preallocated ``out`` (no allocation in the inference loop).
        vjp_inplace: grad ← grad ⊙ σ'(x) in place, given x and y = σ(x). Where σ' is a function
            of σ (tanh: 1 − y², sigmoid: y(1 − y), relu: [y > 0]) it reads y, which the engine
            already holds for every sender at each step: σ is computed once per node and step.
    """

    name: str
    fn: Fn
    derivative: Fn
    is_identity: bool = False
    fused_vjp: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    fn_into: Callable[[torch.Tensor, torch.Tensor], object] | None = None
    vjp_inplace: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], object] | None = None
    # the native kernels of σ into out and of the in-place vjp, bound to fixed tensors
    # (pcgraph.ops.native.bind), for activations that have them
    native_into: str | None = None
    native_vjp: str | None = None

    def vjp(self, grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """grad ⊙ σ'(x), with one fused kernel where torch has one."""
        if self.fused_vjp is not None:
            return self.fused_vjp(grad, x)
        return grad * self.derivative(x)

    def apply_into(self, x: torch.Tensor, out: torch.Tensor) -> None:
        """out ← σ(x) (``out`` may be a strided view; it must not overlap x)."""
        if self.fn_into is not None:
            self.fn_into(x, out)
        else:
            out.copy_(self.fn(x))

    def vjp_(self, grad: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> None:
        """grad ← grad ⊙ σ'(x) in place, where y = σ(x)."""
        if self.vjp_inplace is not None:
            self.vjp_inplace(grad, x, y)
        else:
            grad.copy_(self.vjp(grad, x))

    def into_step(self, x: torch.Tensor, out: torch.Tensor) -> Callable[[], None]:
        """:meth:`apply_into` on these fixed tensors as a step for a loop that repeats it on
        the same buffer views: the native kernel's call is bound once where it applies
        (:func:`pcgraph.ops.native.bind`), so each step skips the per-call checks. It computes
        what :meth:`apply_into` computes (the same kernel under the same conditions)."""
        bound = None if self.native_into is None else native.bind(self.native_into, x, out)
        return _bound_step(bound, self.apply_into, x, out)

    def vjp_step(self, grad: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
        """:meth:`vjp_` on these fixed tensors as a step (see :meth:`into_step`)."""
        bound = None if self.native_vjp is None else native.bind(self.native_vjp, grad, x)
        return _bound_step(bound, self.vjp_, grad, x, y)


def _bound_step(
    bound: native.Bound | None, fallback: Callable[..., None], *args: torch.Tensor
) -> Callable[[], None]:
    if bound is None:
        return functools.partial(fallback, *args)

    def step() -> None:
        if not bound():
            fallback(*args)

    return step


def _identity_derivative(x: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(x)


def _relu_derivative(x: torch.Tensor) -> torch.Tensor:
    return (x > 0).to(x.dtype)


def _leaky_relu_derivative(x: torch.Tensor) -> torch.Tensor:
    # full_like keeps x's dtype: a Python-scalar where() would round 0.01 to float32
    return torch.where(x > 0, torch.ones_like(x), torch.full_like(x, 0.01))


def _tanh(x: torch.Tensor) -> torch.Tensor:
    """`torch.tanh`; on the CPU a native float32 kernel or 2 σ(2x) − 1 (both faster, see
    :func:`_tanh_into`)."""
    if (
        not fast.enabled()
        or x.device.type != "cpu"
        or (x.requires_grad and torch.is_grad_enabled())
    ):
        return torch.tanh(x)  # in-place steps below would break autograd's saved sigmoid
    out = torch.empty_like(x)
    _tanh_into(x, out)
    return out


# below this many elements torch's own tanh is cheaper than the three kernels of 2σ(2x) − 1
_TANH_SMALL = 2048
_SCALARS: dict[tuple[torch.dtype, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}


def _two_minus_one(like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """0-d tensors 2 and −1 (a Python float argument costs a tensor wrap on every call)."""
    key = (like.dtype, like.device)
    found = _SCALARS.get(key)
    if found is None:
        found = _SCALARS[key] = (
            torch.tensor(2.0, dtype=like.dtype, device=like.device),
            torch.tensor(-1.0, dtype=like.dtype, device=like.device),
        )
    return found


def _tanh_into(x: torch.Tensor, out: torch.Tensor) -> None:
    """out ← tanh(x). On the CPU: pcgraph's native float32 kernel where it is built
    (:mod:`pcgraph.ops.native`, ≤ 2.3 ulp, 7× torch's tanh on an AVX2 EPYC), else
    2 σ(2x) − 1: torch's CPU tanh kernel is several times slower than its sigmoid (measured
    2.9 vs 0.24 ns per float32 element on a 2-core x86 VM, torch 2.13), and the identity holds
    to one rounding of the result (|error| ≤ 2.4e-7 in float32). Both are fast paths whose
    reference is ``torch.tanh``, the only kernel while they are off (:mod:`pcgraph.fast`)."""
    if not fast.enabled():
        torch.tanh(x, out=out)
        return
    if _traced_native(x):  # inside torch.compile: the kernel as a custom op in the graph
        native_ops.tanh_into(x, out)
        return
    if native.tanh_into(x, out):
        return
    if x.device.type != "cpu" or x.numel() < _TANH_SMALL:
        torch.tanh(x, out=out)
        return
    two, minus_one = _two_minus_one(x)
    torch.sigmoid(torch.mul(x, two, out=out), out=out)
    torch.add(minus_one, out, alpha=2.0, out=out)  # 2σ − 1 in one kernel


def _traced_native(x: torch.Tensor) -> bool:
    """Whether ``torch.compile`` is tracing a float32 CPU operand with the fast paths on: the
    native kernels then enter the graph as custom ops (:mod:`pcgraph.ops.native_ops`), which
    fall back to torch's kernels themselves where the library is missing."""
    return torch.compiler.is_compiling() and x.is_cpu and x.dtype == torch.float32


def _tanh_derivative(x: torch.Tensor) -> torch.Tensor:
    return 1.0 - _tanh(x) ** 2


def _sigmoid_derivative(x: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(x)
    return s * (1.0 - s)


_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _gelu_derivative(x: torch.Tensor) -> torch.Tensor:
    # d/dx [x Φ(x)] = Φ(x) + x φ(x)  (exact, erf-based GELU)
    cdf = 0.5 * (1.0 + torch.erf(x * _INV_SQRT2))
    pdf = torch.exp(-0.5 * x * x) * _INV_SQRT2PI
    return cdf + x * pdf


def _silu_derivative(x: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(x)
    return s * (1.0 + x * (1.0 - s))


def _softplus_derivative(x: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(x)


def _elu_derivative(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x > 0, torch.ones_like(x), torch.exp(x))


_aten = torch.ops.aten


def _grad_input(op: Callable[..., torch.Tensor], *extra: object) -> Callable[..., None]:
    """An in-place vjp from an aten ``*_backward`` op's out= form (grad is overwritten)."""

    def vjp(g: torch.Tensor, arg: torch.Tensor) -> None:
        op(g, arg, *extra, grad_input=g)

    return vjp


_tanh_bwd = _grad_input(_aten.tanh_backward.grad_input)  # g (1 − y²), from y
_sigmoid_bwd = _grad_input(_aten.sigmoid_backward.grad_input)  # g y (1 − y), from y
_relu_bwd = _grad_input(_aten.threshold_backward.grad_input, 0)  # y > 0 ⟺ x > 0

ACTIVATIONS: Registry[Activation] = Registry("activation")


def _register(name: str, act: Activation) -> None:
    """One implementation per name of :data:`pcgraph.names.ACTIVATION_NAMES`, with its aliases."""
    ACTIVATIONS.register(name, act, aliases=ACTIVATION_NAMES.aliases(name))


_register(
    "identity",
    Activation(
        "identity",
        lambda x: x,
        _identity_derivative,
        is_identity=True,
        fn_into=lambda x, out: out.copy_(x),
        vjp_inplace=lambda g, x, y: None,
    ),
)
_register(
    "relu",
    Activation(
        "relu",
        torch.relu,
        _relu_derivative,
        fused_vjp=lambda g, x: _aten.threshold_backward(g, x, 0),
        fn_into=lambda x, out: torch.clamp(x, min=0.0, out=out),
        vjp_inplace=lambda g, x, y: _relu_bwd(g, y),
    ),
)
_register(
    "leaky_relu",
    Activation("leaky_relu", torch.nn.functional.leaky_relu, _leaky_relu_derivative),
)
_register(
    "tanh",
    Activation(
        "tanh",
        _tanh,
        _tanh_derivative,
        fused_vjp=lambda g, x: _aten.tanh_backward(g, _tanh(x)),
        fn_into=_tanh_into,
        vjp_inplace=lambda g, x, y: _tanh_bwd(g, y),
        native_into="tanh",
    ),
)
_register(
    "sigmoid",
    Activation(
        "sigmoid",
        torch.sigmoid,
        _sigmoid_derivative,
        fused_vjp=lambda g, x: _aten.sigmoid_backward(g, torch.sigmoid(x)),
        fn_into=lambda x, out: torch.sigmoid(x, out=out),
        vjp_inplace=lambda g, x, y: _sigmoid_bwd(g, y),
    ),
)


def _aten_from_x(name: str, derivative: Callable[[torch.Tensor], torch.Tensor]) -> Activation:
    """An activation whose aten forward has an out= form and whose aten backward reads x
    (gelu, silu): ``aten.<name>`` and ``aten.<name>_backward``."""
    forward, backward = getattr(_aten, name), getattr(_aten, f"{name}_backward")
    bwd_inplace = _grad_input(backward.grad_input)
    return Activation(
        name,
        getattr(torch.nn.functional, name),
        derivative,
        fused_vjp=lambda g, x: backward(g, x),
        fn_into=lambda x, out: forward.out(x, out=out),
        vjp_inplace=lambda g, x, y: bwd_inplace(g, x),
    )


def _gelu_native(act: Activation) -> Activation:
    """GELU with pcgraph's native float32 CPU kernels where they apply (:mod:`pcgraph.ops.native`:
    glibc's vector erf, ~1.6× torch's kernels per thread), torch's elsewhere. σ and σ' of every
    path (σ(x), into a buffer, the vjps) take the same kernel for the same tensor, so that a
    forward sweep's x = μ leaves ε = x − μ exactly 0 whichever path computed μ. The reference
    is torch's GELU and ``gelu_backward``, the only kernels while the fast paths are off
    (:mod:`pcgraph.fast`: the native calls then return False).

    torch's float32 CPU GELU rounds a strided operand (scalar erf) differently from a
    contiguous one (vector erf; measured up to 5e-7 apart, torch 2.13): its CPU operands are
    made contiguous first, so that torch's σ does not depend on the layout either (a forward
    sweep on x's columns and the inference step on its working blocks then agree to the bit).
    """
    act_fn, act_into, act_vjp, act_fused = act.fn, act.fn_into, act.vjp_inplace, act.fused_vjp
    assert act_into is not None and act_vjp is not None and act_fused is not None

    def packed(t: torch.Tensor) -> torch.Tensor:
        return t if t.is_contiguous() or not t.is_cpu else t.contiguous()

    def torch_fn(x: torch.Tensor) -> torch.Tensor:
        return act_fn(packed(x))

    def torch_into(x: torch.Tensor, out: torch.Tensor) -> None:
        if packed(out) is out:
            act_into(packed(x), out)
        else:
            out.copy_(act_fn(packed(x)))

    def torch_fused(g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return act_fused(packed(g), packed(x))

    def torch_vjp(g: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> None:
        if packed(g) is g:
            act_vjp(g, packed(x), y)
        else:
            g.copy_(act_fused(packed(g), packed(x)))

    def native_may_take(x: torch.Tensor) -> bool:  # no output allocated in vain elsewhere
        return (
            fast.enabled()
            and x.is_cpu
            and x.dtype == torch.float32
            and not (x.requires_grad and torch.is_grad_enabled())
        )

    def _gelu(x: torch.Tensor) -> torch.Tensor:
        """`torch.nn.functional.gelu` (exact); on the CPU a native float32 kernel (faster)."""
        if native_may_take(x):
            out = torch.empty_like(x)
            if native.gelu_into(x, out):
                return out
        return torch_fn(x)

    def fn_into(x: torch.Tensor, out: torch.Tensor) -> None:
        if fast.enabled() and _traced_native(x):
            native_ops.gelu_into(x, out)
        elif not native.gelu_into(x, out):
            torch_into(x, out)

    def fused_vjp(g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if native_may_take(x) and not g.requires_grad:
            out = g.clone()
            if native.gelu_vjp_(out, x):
                return out
        return torch_fused(g, x)

    def vjp_inplace(g: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> None:
        if fast.enabled() and _traced_native(x):
            native_ops.gelu_vjp_(g, x)
        elif not native.gelu_vjp_(g, x):
            torch_vjp(g, x, y)

    return dataclasses.replace(
        act,
        fn=_gelu,
        fn_into=fn_into,
        fused_vjp=fused_vjp,
        vjp_inplace=vjp_inplace,
        native_into="gelu",
        native_vjp="gelu_vjp",
    )


_register("gelu", _gelu_native(_aten_from_x("gelu", _gelu_derivative)))
_register("silu", _aten_from_x("silu", _silu_derivative))
_register("softplus", Activation("softplus", torch.nn.functional.softplus, _softplus_derivative))
_register("elu", Activation("elu", torch.nn.functional.elu, _elu_derivative))


if ACTIVATIONS.names() != ACTIVATION_NAMES.names():  # pragma: no cover - a developer's slip
    raise RuntimeError(
        f"activations without an implementation or a name: {ACTIVATIONS.names()} vs "
        f"{ACTIVATION_NAMES.names()} (pcgraph/names.py lists the names)"
    )


def get_activation(name: str) -> Activation:
    """The activation registered as ``name`` (aliases accepted); unknown names list the choices."""
    return ACTIVATIONS.get(name)
