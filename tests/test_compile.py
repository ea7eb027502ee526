"""The opt-in torch.compile path of the inference step gives the eager results."""

from __future__ import annotations

import pytest
import torch

import pcgraph as pc
from pcgraph.errors import ConfigError
from pcgraph.ops import matmul


def run(
    compile_step: bool, optimizer: str, dtype: torch.dtype = torch.float64
) -> tuple[list[float], list[torch.Tensor]]:
    net = pc.compile("topologies/mlp5_fashion.yaml", seed=0, dtype=dtype)
    learner = pc.PCLearner(
        net,
        init="forward",
        T=4,
        lr_neurons=0.05,
        neuron_optimizer=optimizer,  # type: ignore[arg-type]
        compile_step=compile_step,
        optimizer=torch.optim.SGD(net.parameters(), lr=1e-2),
    )
    g = torch.Generator().manual_seed(0)
    data = {
        "x": torch.rand(256, 784, generator=g, dtype=dtype),
        "y": torch.eye(10, dtype=dtype)[torch.randint(0, 10, (256,), generator=g)],
    }
    energies = [float(learner.train_step(data, trace=(k == 1)).energy_after) for k in range(3)]
    return energies, [p.detach().clone() for p in net.parameters()]


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
def test_compiled_steps_equal_eager(optimizer: str) -> None:
    eager, compiled = run(False, optimizer), run(True, optimizer)
    assert compiled[0] == pytest.approx(eager[0], rel=1e-10)
    for a, b in zip(eager[1], compiled[1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_compiled_steps_equal_eager_in_float32_where_eager_uses_onednn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # eager float32 products on oneDNN (forced: the size rule picks MKL on a CPU without
    # AVX-512; pcgraph.ops.matmul); inside torch.compile they must fall back to torch's kernels
    # instead of failing to lower
    monkeypatch.setattr(matmul, "_MODE", "onednn")
    eager, compiled = run(False, "sgd", torch.float32), run(True, "sgd", torch.float32)
    assert compiled[0] == pytest.approx(eager[0], rel=1e-4)
    for a, b in zip(eager[1], compiled[1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_compile_step_refuses_adam_neurons() -> None:
    net = pc.compile("topologies/mlp5_fashion.yaml", seed=0)
    x = net.new_states(4)
    with pytest.raises(ConfigError, match="euler, momentum, sgd neuron optimizers"):
        pc.solve_inference(net, x, "train", 2, optimizer="adam", compile_step=True)


# --- the whole update compiled (pcgraph/engine/compiled_update.py) ---------------------------
def _learners(act: str, dtype: torch.dtype) -> tuple[pc.PCLearner, pc.PCLearner]:
    def make() -> pc.PCLearner:
        net = pc.compile(pc.mlp([24, 16, 16, 6], activation=act), seed=0, dtype=dtype)
        opt = torch.optim.SGD(net.parameters(), lr=1e-2, momentum=0.9)
        return pc.PCLearner(net, init="forward", T=4, lr_neurons=0.1, optimizer=opt)

    return make(), make()


def _batches(dtype: torch.dtype) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [
        {"x": torch.randn(32, 24, generator=g, dtype=dtype), "y": torch.randn(32, 6, generator=g)}
        for _ in range(3)
    ]


@pytest.mark.slow
@pytest.mark.parametrize(("act", "dtype"), [("tanh", torch.float32), ("gelu", torch.float64)])
def test_compiled_update_equals_train_step(act: str, dtype: torch.dtype) -> None:
    """Three updates through CompiledUpdate and through the eager train_step from the same
    weights: the same energies and weights (float64 to rounding; float32 to 1e-5), and in
    float32 on the CPU with the fast paths on, pcgraph's custom ops run inside the graph."""
    from pcgraph import fast
    from pcgraph.engine.compiled_update import CompiledUpdate
    from pcgraph.ops import native, native_ops

    eager, comp = _learners(act, dtype)
    batches = [{k: v.to(dtype) for k, v in b.items()} for b in _batches(dtype)]
    update = CompiledUpdate(comp, batches[0])
    native_ops.CALLS.clear()
    tol = {"rtol": 1e-10, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-6}
    for data in batches:
        got = update(data)
        want = eager.train_step(data).energy_after
        torch.testing.assert_close(got, want, **tol)
    for a, b in zip(eager.net.parameters(), comp.net.parameters(), strict=True):
        torch.testing.assert_close(b.detach(), a.detach(), **tol)
    assert comp.steps == eager.steps == 3
    if dtype == torch.float32 and fast.enabled() and native.available():
        assert native_ops.CALLS[f"{act}_into"] > 0  # the custom ops ran in the compiled graph


def test_compiled_update_refuses_what_it_cannot_compile() -> None:
    from pcgraph.engine.compiled_update import CompiledUpdate

    net = pc.compile(pc.mlp([24, 16, 6]), seed=0)
    data = {"x": torch.randn(8, 24), "y": torch.randn(8, 6)}
    with pytest.raises(ConfigError, match="init 'forward'"):
        CompiledUpdate(pc.PCLearner(net, init="zero", T=2), data)
    with pytest.raises(ConfigError, match="compilable one-stage neuron solver"):
        CompiledUpdate(pc.PCLearner(net, init="forward", T=2, neuron_optimizer="heun"), data)
    update = CompiledUpdate(pc.PCLearner(net, init="forward", T=2), data)  # compiles lazily
    with pytest.raises(ConfigError, match=r"shapes \{'x': \(8, 24\)"):
        update({"x": torch.randn(4, 24), "y": torch.randn(4, 6)})
