"""Linear edges of one signature run as one batched matmul: same results as edge by edge."""

from __future__ import annotations

import pytest
import torch

import pcgraph as pc
from pcgraph.compiler import program_for
from pcgraph.compiler import stacking as stacking_module


def group_graph(bias: bool, activation: str, ce: bool) -> pc.GraphSpec:
    """Five groups of 6 wired all-to-all (20 same-signature edges) between an input and output."""
    groups = [f"g{i}" for i in range(5)]
    nodes = [{"name": "x", "shape": 7, "role": "input"}]
    nodes += [{"name": g, "shape": 6, "activation": activation} for g in groups]
    nodes += [
        {"name": "y", "shape": 4, "role": "output", "energy": "cross_entropy" if ce else "gaussian"}
    ]
    edges = [{"source": "x", "target": g, "bias": bias} for g in groups]
    edges += [{"source": a, "target": b, "bias": bias} for a in groups for b in groups if a != b]
    edges += [{"source": g, "target": "y", "bias": bias} for g in groups]
    return pc.GraphSpec.from_dict({"name": "groups", "nodes": nodes, "edges": edges})


def states(net: pc.PCNetwork, batch: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(batch, net.state_size, generator=g, dtype=torch.float64)
    for n in net.nodes:
        if n.energy == "cross_entropy":
            x[:, n.cols] = torch.softmax(x[:, n.cols], -1)
    return x


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("activation", ["identity", "tanh"])
@pytest.mark.parametrize("ce", [False, True])
def test_stacked_gradients_equal_autograd(bias: bool, activation: str, ce: bool) -> None:
    net = pc.compile(
        group_graph(bias, activation, ce), seed=0, dtype=torch.float64, backend="dense"
    )
    clamp = net.resolve_clamp("train")
    prog = program_for(net, clamp)
    assert len(prog.stacks) == 2  # g→y (6→4) and g→g (6→6); x→g has a clamped source
    assert sum(len(st.edges) for st in prog.stacks) == 25
    x = states(net)
    buf = prog.prepare(x)
    prog.state_grad(x, buf, prog.errors(x, buf))
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(net.energy(xr), xr)
    torch.testing.assert_close(prog.as_states(buf.grad), g * prog.free_mask, rtol=1e-10, atol=1e-12)
    net.zero_grad()
    prog.param_grads(x, buf)
    local = [p.grad.clone() for p in net.parameters()]  # type: ignore[union-attr]
    net.zero_grad()
    net.energy(x).backward()
    for a, b in zip(local, (p.grad for p in net.parameters()), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_stacked_training_equals_edge_by_edge(monkeypatch: pytest.MonkeyPatch) -> None:
    def train(stack_min: int) -> tuple[list[float], list[torch.Tensor]]:
        monkeypatch.setattr(stacking_module, "STACK_MIN", stack_min)
        net = pc.compile(group_graph(True, "tanh", False), seed=0, dtype=torch.float64)
        learner = pc.PCLearner(
            net,
            init="memory",
            T=5,
            lr_neurons=0.1,
            init_options={"patterns": 16, "embed_dim": 8, "heads": 2},
            optimizer=torch.optim.SGD(net.parameters(), lr=1e-2),
        )
        stacks = len(program_for(net, learner.clamp).stacks)
        assert (stacks > 0) == (stack_min < 100)
        g = torch.Generator().manual_seed(1)
        data = {
            "x": torch.randn(8, 7, generator=g, dtype=torch.float64),
            "y": torch.randn(8, 4, generator=g, dtype=torch.float64),
        }
        energies = [float(learner.train_step(data).energy_after) for _ in range(4)]
        return energies, [p.detach().clone() for p in net.parameters()]

    stacked, plain = train(4), train(1000)
    assert stacked[0] == pytest.approx(plain[0], rel=1e-10)
    for a, b in zip(stacked[1], plain[1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
