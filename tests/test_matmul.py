"""pcgraph.ops.matmul and pcgraph.compiler.steps: the fast paths compute what the math says.

References: the products written with torch.mm in float64, and the general (edge-by-edge)
inference step against torch.autograd of the energy.
"""

from __future__ import annotations

import pytest
import torch

import pcgraph as pc
from pcgraph.compiler import program_for
from pcgraph.ops import matmul

needs_onednn = pytest.mark.skipif(
    matmul.onednn_linear_op() is None, reason="this torch build has no oneDNN linear op"
)


def _operands(b: int, n_in: int, n_out: int, *, strided: bool) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    s = (
        torch.randn(b, n_in + 7, generator=g)[:, 3 : 3 + n_in]
        if strided
        else torch.randn(b, n_in, generator=g)
    )
    w = torch.randn(n_out, n_in, generator=g) / n_in**0.5
    bias = torch.randn(n_out, generator=g)
    delta = torch.randn(b, n_out, generator=g)
    return s, w, bias, delta


@needs_onednn
@pytest.mark.parametrize("strided", [False, True])
def test_onednn_products_equal_float64_references(strided: bool) -> None:
    s, w, b, d = _operands(256, 128, 96, strided=strided)  # ≥ ONEDNN_MIN_MACS
    with torch.no_grad():
        assert matmul.use_onednn(s, 256 * 128 * 96)
        fwd, msg, grad = matmul.linear(s, w, b), matmul.linear_vjp(d, w), matmul.linear_grad(d, s)
    assert fwd is not None and msg is not None and grad is not None
    s64, w64, b64, d64 = (t.double() for t in (s, w, b, d))
    for got, want in ((fwd, s64 @ w64.T + b64), (msg, d64 @ w64), (grad, d64.T @ s64)):
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-4)


def test_small_float64_and_autograd_products_stay_on_torch_kernels() -> None:
    s, w, b, _ = _operands(8, 16, 4, strided=False)
    with torch.no_grad():
        assert matmul.linear(s, w, b) is None  # far below the oneDNN size
        assert matmul.linear(s.double(), w.double(), b.double()) is None
    big_s, big_w, big_b, _ = _operands(256, 128, 96, strided=False)
    with torch.enable_grad():  # the oneDNN op has no autograd formula
        assert matmul.linear(big_s, big_w, big_b) is None
    with torch.no_grad():
        assert matmul.linear(big_s.double(), big_w.double(), big_b.double()) is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("activation", ["tanh", "gelu", "relu", "sigmoid", "silu", "elu"])
def test_fast_step_equals_autograd_of_the_energy(activation: str, dtype: torch.dtype) -> None:
    # a chain wide enough that float32 products go to oneDNN (where available) and a skip edge
    # so that the general path runs too: ∂E/∂x and ∂E/∂θ must equal autograd's
    spec = pc.GraphSpec.from_dict(
        {
            "name": "skip",
            "nodes": [
                {"name": "x", "shape": 96, "role": "input"},
                {"name": "h1", "shape": 128, "activation": activation},
                {"name": "h2", "shape": 128, "activation": activation},
                {"name": "y", "shape": 10, "role": "output"},
            ],
            "edges": [
                {"source": "x", "target": "h1", "op": "linear"},
                {"source": "h1", "target": "h2", "op": "linear"},
                {"source": "h2", "target": "y", "op": "linear"},
                {"source": "h1", "target": "y", "op": "linear"},
            ],
        }
    )
    net = pc.compile(spec, seed=0, dtype=dtype)
    clamp = net.resolve_clamp("train")
    g = torch.Generator().manual_seed(1)
    x = torch.randn(256, net.state_size, generator=g, dtype=dtype)
    prog = program_for(net, clamp)
    buf = prog.prepare(x)
    assert any(fn is not None for _, fn, _ in prog.error_steps)  # h2: one linear parent
    assert any(fn is not None for fn, _ in prog.gradient_steps.steps)  # h2: one linear child
    sent = prog.errors(x, buf)
    prog.state_grad(x, buf, sent)
    net.zero_grad(set_to_none=True)
    prog.param_grads(x, buf, accumulate=False)
    local_p = [p.grad.clone() for p in net.parameters()]  # type: ignore[union-attr]
    x_ = x.detach().clone().requires_grad_(True)
    energy = net.energy(x_)
    gx, *gp = torch.autograd.grad(energy, [x_, *net.parameters()])
    mask = prog.free_mask.bool()
    tol = {"rtol": 1e-10, "atol": 1e-10} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-3}
    torch.testing.assert_close(buf.grad[:, mask], gx[:, mask], **tol)
    for got, want in zip(local_p, gp, strict=True):
        torch.testing.assert_close(got, want, **tol)


def test_param_grads_overwrite_in_place_without_new_tensors() -> None:
    net = pc.compile(pc.mlp([32, 16, 4], activation="tanh"), seed=0, dtype=torch.float64)
    clamp = net.resolve_clamp("train")
    x = torch.randn(8, net.state_size, dtype=torch.float64)
    prog = program_for(net, clamp)
    buf = prog.prepare(x)
    prog.errors(x, buf)
    prog.param_grads(x, buf, accumulate=False)
    first = {id(p): (p.grad, p.grad.clone()) for p in net.parameters()}  # type: ignore[union-attr]
    prog.param_grads(x, buf, accumulate=False)  # the same gradient again: overwritten, not added
    for p in net.parameters():
        tensor, value = first[id(p)]
        assert p.grad is tensor  # the same storage: nothing allocated
        torch.testing.assert_close(p.grad, value, rtol=0, atol=0)
    prog.param_grads(x, buf, accumulate=True)
    for p in net.parameters():
        torch.testing.assert_close(p.grad, 2 * first[id(p)][1])
