"""GPU checks (marker ``gpu``; skipped without CUDA): the CUDA run equals the CPU run."""

from __future__ import annotations

import pytest
import torch

import pcgraph as pc
from pcgraph.compiler import program_for

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def _data(net: pc.PCNetwork, clamp: frozenset[str], batch: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    out = {}
    for n in net.nodes:
        if n.name in clamp:
            v = torch.rand(batch, *n.shape, generator=g, dtype=torch.float64)
            if n.energy == "cross_entropy":
                v = torch.eye(n.size, dtype=torch.float64)[v.argmax(-1) % n.size]
            out[n.name] = v
    return out


@pytest.mark.parametrize(
    ("topology", "init", "clamp"),
    [
        ("mlp5_fashion", "forward", "train"),
        ("mlp5_fashion", "hybrid", "train"),
        ("decoder4_fashion", "memory", "generate"),
        ("loop", "memory", "train"),
        ("alexnet_cifar10", "forward", "train"),
    ],
)
def test_cuda_training_matches_cpu(topology: str, init: str, clamp: str) -> None:
    params = {}
    for device in ("cpu", "cuda"):
        net = pc.compile(f"topologies/{topology}.yaml", seed=0, device=device, dtype=torch.float64)
        learner = pc.PCLearner(
            net,
            init=init,
            T=4,
            lr_neurons=0.05,
            clamp=clamp,
            optimizer=torch.optim.SGD(net.parameters(), lr=1e-3),
        )
        data = {k: v.to(device) for k, v in _data(net, learner.clamp, 32).items()}
        for _ in range(3):
            learner.train_step(data)
        params[device] = [p.detach().cpu() for p in net.parameters()]
    for a, b in zip(params["cpu"], params["cuda"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


def test_cuda_local_gradients_equal_autograd() -> None:
    net = pc.compile(
        "topologies/fully_connected_groups.yaml", seed=0, device="cuda", dtype=torch.float64
    )
    clamp = net.resolve_clamp("train")
    x = torch.randn(8, net.state_size, device="cuda", dtype=torch.float64)
    prog = program_for(net, clamp)
    buf = prog.prepare(x)
    prog.state_grad(x, buf, prog.errors(x, buf))
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(net.energy(xr), xr)
    torch.testing.assert_close(prog.as_states(buf.grad), g * prog.free_mask)


def test_cuda_sparse_backend_runs() -> None:
    nodes = [
        {"name": f"n{i}", "shape": 1, "activation": "tanh", "role": "input" if i < 10 else "latent"}
        for i in range(200)
    ]
    g = torch.Generator().manual_seed(0)
    pairs = {
        (int(a), int(b)) for a, b in torch.randint(0, 200, (2, 800), generator=g).t() if a != b
    }
    spec = pc.GraphSpec.from_dict(
        {
            "name": "sparse",
            "nodes": nodes,
            "edges": [{"source": f"n{a}", "target": f"n{b}"} for a, b in sorted(pairs)],
        }
    )
    net = pc.compile(spec, seed=0, device="cuda")
    learner = pc.PCLearner(net, init="zero", T=8, clamp="predict", lr_neurons=0.05)
    data = {f"n{i}": torch.rand(16, 1, device="cuda") for i in range(10)}
    before = float(learner.train_step(data).energy_after)
    for _ in range(20):
        after = float(learner.train_step(data).energy_after)
    assert after < before


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_cuda_graph_replay_equals_eager(optimizer: str) -> None:
    results = {}
    for graphed in (False, True):
        net = pc.compile("topologies/mlp5_fashion.yaml", seed=0, device="cuda", dtype=torch.float64)
        learner = pc.PCLearner(
            net,
            init="forward",
            T=6,
            lr_neurons=0.05,
            cuda_graph=graphed,
            neuron_optimizer=optimizer,  # type: ignore[arg-type]
            optimizer=torch.optim.SGD(net.parameters(), lr=1e-3),
        )
        data = {k: v.to("cuda") for k, v in _data(net, learner.clamp, 64).items()}
        energies = [float(learner.train_step(data).energy_after) for _ in range(4)]
        results[graphed] = (energies, [p.detach().cpu() for p in net.parameters()])
    assert results[True][0] == pytest.approx(results[False][0], rel=1e-9)
    for a, b in zip(results[False][1], results[True][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_cuda_compiled_steps_equal_eager() -> None:
    results = {}
    for compiled in (False, True):
        net = pc.compile("topologies/mlp5_fashion.yaml", seed=0, device="cuda", dtype=torch.float64)
        learner = pc.PCLearner(
            net,
            init="forward",
            T=4,
            lr_neurons=0.05,
            compile_step=compiled,
            optimizer=torch.optim.SGD(net.parameters(), lr=1e-3),
        )
        data = {k: v.to("cuda") for k, v in _data(net, learner.clamp, 64).items()}
        for _ in range(3):
            learner.train_step(data)
        results[compiled] = [p.detach().cpu() for p in net.parameters()]
    for a, b in zip(results[False], results[True], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_cuda_graph_metrics_are_not_overwritten_by_later_replays() -> None:
    net = pc.compile("topologies/mlp5_fashion.yaml", seed=0, device="cuda", dtype=torch.float64)
    learner = pc.PCLearner(
        net,
        init="forward",
        T=4,
        lr_neurons=0.05,
        cuda_graph=True,
        optimizer=torch.optim.SGD(net.parameters(), lr=1e-2),
    )
    data = {k: v.to("cuda") for k, v in _data(net, learner.clamp, 32).items()}
    kept = []
    for _ in range(4):
        m = learner.train_step(data)
        kept.append((m, float(m.energy_before), m.node_energies.clone()))
    for m, before, nodes in kept:  # what a callback stored still says what it said then
        assert float(m.energy_before) == before
        torch.testing.assert_close(m.node_energies, nodes)
