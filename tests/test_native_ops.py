"""The native kernels as torch.library custom ops (:mod:`pcgraph.ops.native_ops`): their
schemas and fake implementations pass torch's own ``opcheck``, each equals torch's reference
kernel, and a compiled inference step runs them inside its graph."""

from __future__ import annotations

import pytest
import torch

import pcgraph as pc
from pcgraph.ops import native_ops


def _operands(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(16, 9, generator=g, dtype=dtype) * 4, torch.randn(
        16, 9, generator=g, dtype=dtype
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck_passes_for_every_op(dtype: torch.dtype) -> None:
    x, g = _operands(dtype)
    torch.library.opcheck(native_ops.tanh_into, (x, torch.empty_like(x)))
    torch.library.opcheck(native_ops.gelu_into, (x, torch.empty_like(x)))
    torch.library.opcheck(native_ops.gelu_vjp_, (g.clone(), x))


def test_each_op_equals_torchs_reference_kernel() -> None:
    x, g = _operands(torch.float32)
    out = torch.empty_like(x)
    native_ops.tanh_into(x, out)
    torch.testing.assert_close(out, torch.tanh(x), rtol=0, atol=1e-6)
    native_ops.gelu_into(x, out)
    torch.testing.assert_close(out, torch.nn.functional.gelu(x), rtol=0, atol=2e-6)
    got = g.clone()
    native_ops.gelu_vjp_(got, x)
    torch.testing.assert_close(got, torch.ops.aten.gelu_backward(g, x), rtol=0, atol=2e-6)


@pytest.mark.slow
@pytest.mark.parametrize("act", ["tanh", "gelu"])
def test_a_compiled_step_runs_the_custom_ops_and_equals_the_eager_step(act: str) -> None:
    # every compiled step is one code object (the runner's closure): earlier compiled tests in
    # this process count against dynamo's recompile limit, past which it runs steps eagerly
    torch._dynamo.reset()
    spec = pc.mlp([12, 10, 10, 4], activation=act)
    g = torch.Generator().manual_seed(1)
    data = {"x": torch.randn(8, 12, generator=g), "y": torch.randn(8, 4, generator=g)}
    weights = []
    for compiled in (False, True):
        net = pc.compile(spec, seed=0)
        learner = pc.PCLearner(
            net,
            init="forward",
            T=3,
            lr_neurons=0.1,
            compile_step=compiled,
            optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
        )
        native_ops.CALLS.clear()
        learner.train_step(data)
        if compiled and pc.fast.enabled():
            assert native_ops.CALLS[f"{act}_into"] > 0, "the compiled step ran no custom op"
        weights.append([p.detach().clone() for p in net.parameters()])
    for eager_w, compiled_w in zip(*weights, strict=True):
        torch.testing.assert_close(compiled_w, eager_w, rtol=1e-5, atol=1e-6)
