"""Node activations σ with their closed-form derivatives σ' (used by the local-gradient path)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

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
    """

    name: str
    fn: Fn
    derivative: Fn
    is_identity: bool = False
    fused_vjp: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None

    def vjp(self, grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """grad ⊙ σ'(x), with one fused kernel where torch has one."""
        if self.fused_vjp is not None:
            return self.fused_vjp(grad, x)
        return grad * self.derivative(x)


def _identity_derivative(x: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(x)


def _relu_derivative(x: torch.Tensor) -> torch.Tensor:
    return (x > 0).to(x.dtype)


def _leaky_relu_derivative(x: torch.Tensor) -> torch.Tensor:
    # full_like keeps x's dtype: a Python-scalar where() would round 0.01 to float32
    return torch.where(x > 0, torch.ones_like(x), torch.full_like(x, 0.01))


def _tanh_derivative(x: torch.Tensor) -> torch.Tensor:
    return 1.0 - torch.tanh(x) ** 2


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


ACTIVATIONS: Registry[Activation] = Registry("activation")
ACTIVATIONS.register(
    "identity",
    Activation("identity", lambda x: x, _identity_derivative, is_identity=True),
    aliases=("linear", "none"),
)
_aten = torch.ops.aten
ACTIVATIONS.register(
    "relu",
    Activation(
        "relu",
        torch.relu,
        _relu_derivative,
        fused_vjp=lambda g, x: _aten.threshold_backward(g, x, 0),
    ),
)
ACTIVATIONS.register(
    "leaky_relu",
    Activation("leaky_relu", torch.nn.functional.leaky_relu, _leaky_relu_derivative),
)
ACTIVATIONS.register(
    "tanh",
    Activation(
        "tanh",
        torch.tanh,
        _tanh_derivative,
        fused_vjp=lambda g, x: _aten.tanh_backward(g, torch.tanh(x)),
    ),
)
ACTIVATIONS.register("sigmoid", Activation("sigmoid", torch.sigmoid, _sigmoid_derivative))
ACTIVATIONS.register(
    "gelu",
    Activation(
        "gelu",
        torch.nn.functional.gelu,
        _gelu_derivative,
        fused_vjp=lambda g, x: _aten.gelu_backward(g, x),
    ),
)
ACTIVATIONS.register(
    "silu",
    Activation(
        "silu",
        torch.nn.functional.silu,
        _silu_derivative,
        fused_vjp=lambda g, x: _aten.silu_backward(g, x),
    ),
    aliases=("swish",),
)
ACTIVATIONS.register(
    "softplus", Activation("softplus", torch.nn.functional.softplus, _softplus_derivative)
)
ACTIVATIONS.register("elu", Activation("elu", torch.nn.functional.elu, _elu_derivative))


def get_activation(name: str) -> Activation:
    """The activation registered as ``name`` (aliases accepted); unknown names list the choices."""
    return ACTIVATIONS.get(name)
