"""pcgraph.activations: every σ is the documented function and every σ' is its derivative.

References: the functions written out from their definitions, and torch.autograd in float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

import pcgraph as pc
from pcgraph.activations import ACTIVATIONS, get_activation
from pcgraph.errors import SpecError

Ref = Callable[[torch.Tensor], torch.Tensor]


def _phi(x: torch.Tensor) -> torch.Tensor:
    """Standard normal CDF Φ."""
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


# σ written from its textbook definition, independently of the module under test
DEFINITIONS: dict[str, Ref] = {
    "identity": lambda x: x,
    "relu": lambda x: torch.clamp(x, min=0.0),
    "leaky_relu": lambda x: torch.where(x > 0, x, 0.01 * x),
    "tanh": lambda x: (torch.exp(x) - torch.exp(-x)) / (torch.exp(x) + torch.exp(-x)),
    "sigmoid": lambda x: 1.0 / (1.0 + torch.exp(-x)),
    "gelu": lambda x: x * _phi(x),
    "silu": lambda x: x / (1.0 + torch.exp(-x)),
    "softplus": lambda x: torch.log1p(torch.exp(x)),
    "elu": lambda x: torch.where(x > 0, x, torch.exp(x) - 1.0),
}


def grid() -> torch.Tensor:
    """Points in [-8, 8] including the kinks at 0, in float64."""
    return torch.cat(
        [
            torch.linspace(-8.0, 8.0, 161, dtype=torch.float64),
            torch.randn(200, dtype=torch.float64) * 3.0,
        ]
    )


def autograd_derivative(fn: Ref, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(fn(x).sum(), x)
    return grad


def test_registry_holds_exactly_the_documented_activations() -> None:
    assert ACTIVATIONS.names() == sorted(DEFINITIONS)


@pytest.mark.parametrize("name", sorted(DEFINITIONS))
def test_activation_is_the_documented_function(name: str) -> None:
    x = grid()
    torch.testing.assert_close(
        get_activation(name).fn(x), DEFINITIONS[name](x), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("name", sorted(DEFINITIONS))
def test_derivative_matches_autograd_in_float64(name: str) -> None:
    act = get_activation(name)
    x = grid()
    expected = autograd_derivative(act.fn, x)
    got = act.derivative(x)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(DEFINITIONS))
def test_derivative_matches_the_definition_far_from_zero(name: str) -> None:
    # |x| large: saturating regions; torch's softplus switches to x above 20, so compare with
    # the derivative of the definition at a tolerance that allows for that switch
    x = torch.tensor([-40.0, -25.0, 25.0, 40.0], dtype=torch.float64)
    expected = autograd_derivative(DEFINITIONS[name], x)
    torch.testing.assert_close(get_activation(name).derivative(x), expected, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("name", sorted(DEFINITIONS))
def test_derivative_keeps_float32(name: str) -> None:
    x = torch.randn(5, 3)
    out = get_activation(name).derivative(x)
    assert out.dtype == torch.float32 and out.shape == x.shape


def test_only_identity_is_flagged_identity() -> None:
    flagged = [n for n in ACTIVATIONS.names() if get_activation(n).is_identity]
    assert flagged == ["identity"]


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("linear", "identity"),
        ("none", "identity"),
        ("swish", "silu"),
        ("ReLU", "relu"),
        ("Leaky-ReLU", "leaky_relu"),
        (" GELU ", "gelu"),
    ],
)
def test_aliases_and_spellings(alias: str, canonical: str) -> None:
    assert get_activation(alias).name == canonical


def test_unknown_activation_lists_the_choices() -> None:
    with pytest.raises(SpecError) as info:
        get_activation("sigmoidd")
    message = str(info.value)
    assert "unknown activation 'sigmoidd'" in message
    assert "Did you mean 'sigmoid'?" in message
    assert "Valid choices: " + ", ".join(sorted(DEFINITIONS)) in message


@pytest.mark.parametrize("name", sorted(DEFINITIONS))
def test_in_place_forms_equal_the_function_and_its_vjp(name: str) -> None:
    # the inference loop's forms: σ into a strided view, grad ⊙ σ'(x) in place from x and σ(x)
    act = get_activation(name)
    x = grid().reshape(19, 19)
    flat = torch.zeros(19, 30, dtype=torch.float64)
    out = flat[:, 5:24]  # a node's columns of a flat buffer
    act.apply_into(x, out)
    torch.testing.assert_close(out, DEFINITIONS[name](x), rtol=1e-12, atol=1e-12)
    g = torch.randn(19, 19, dtype=torch.float64)
    expected = g * autograd_derivative(DEFINITIONS[name], x)
    act.vjp_(g, x, act.fn(x))
    torch.testing.assert_close(g, expected, rtol=1e-10, atol=1e-12)


def test_tanh_keeps_autograd_and_float32_accuracy() -> None:
    act = get_activation("tanh")
    x = torch.linspace(-6, 6, 1001, requires_grad=True)
    (grad,) = torch.autograd.grad(act.fn(x).sum(), x)  # through torch.tanh when grad is on
    torch.testing.assert_close(grad, 1 - torch.tanh(x.detach()) ** 2)
    with torch.no_grad():  # the 2σ(2x) − 1 form: within a few float32 roundings of tanh
        assert float((act.fn(x) - torch.tanh(x)).abs().max()) < 4e-7


def test_torch_gelu_does_not_depend_on_the_layout() -> None:
    # torch's float32 CPU GELU alone rounds a strided operand differently from a contiguous
    # one; with the fast paths off (torch's kernels only) σ and σ' of a node's columns of the
    # state must equal those of its contiguous block to the bit, or a forward sweep's x = μ
    # would not leave ε = x − μ exactly 0
    act = get_activation("gelu")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 600, generator=g)[:, 100:356]  # a node's columns of the state
    grad = torch.randn(64, 256, generator=g)
    with pc.fast_paths(False):
        want, want_vjp = act.fn(x.contiguous()), act.vjp(grad, x.contiguous())
        assert torch.equal(act.fn(x), want)
        out = torch.zeros(64, 600)[:, 7:263]
        act.apply_into(x, out)
        assert torch.equal(out, want)
        assert torch.equal(act.vjp(grad, x), want_vjp)
        g_view = torch.zeros(64, 600)[:, 3:259]
        g_view.copy_(grad)
        act.vjp_(g_view, x, want)
        assert torch.equal(g_view, want_vjp)
    torch.testing.assert_close(want.double(), DEFINITIONS["gelu"](x.double()), rtol=0, atol=1e-6)
