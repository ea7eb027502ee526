"""pcgraph.BackpropTwin: the feed-forward network of a graph with its inputs clamped.

Oracles: forward initialization sets every free node of a DAG with clamped roots to its
prediction (x_i = μ_i, Proposition 3.2), so the twin's output must equal the PC network's state
after ``learner.predict`` (the forward sweep), and a hand-written chain of the same weights.
"""

from __future__ import annotations

import pytest
import torch

import pcgraph as pc

F64 = torch.float64


def _spec(nodes: list[dict], edges: list[dict]) -> pc.GraphSpec:
    return pc.GraphSpec.model_validate({"name": "g", "nodes": nodes, "edges": edges})


def test_twin_of_an_mlp_is_the_hand_written_chain() -> None:
    net = pc.compile(pc.mlp([5, 7, 3], activation="tanh"), dtype=F64, seed=0)
    twin = pc.BackpropTwin(net)
    x = torch.randn(4, 5, dtype=F64)
    w1, b1, w2, b2 = (p.detach().clone().requires_grad_() for p in net.parameters())
    h = x @ w1.T + b1  # x is identity-activated, h is tanh
    expected = torch.tanh(h) @ w2.T + b2
    got = twin(x)
    torch.testing.assert_close(got, expected)
    # and so are its gradients (autograd through the copied kernels)
    got.square().sum().backward()
    expected.square().sum().backward()
    for mine, ref in zip(twin.parameters(), (w1, b1, w2, b2), strict=True):
        torch.testing.assert_close(mine.grad, ref.grad)


def test_twin_matches_the_forward_sweep_on_a_branching_graph_with_a_skip() -> None:
    spec = _spec(
        [
            {"name": "x", "shape": 6, "role": "input"},
            {"name": "a", "shape": 5, "activation": "gelu"},
            {"name": "b", "shape": 4, "activation": "relu"},
            {"name": "y", "shape": 3, "role": "output", "energy": "cross_entropy"},
        ],
        [
            {"source": "x", "target": "a"},
            {"source": "x", "target": "b"},
            {"source": "a", "target": "b"},
            {"source": "a", "target": "y"},
            {"source": "b", "target": "y"},
        ],
    )
    net = pc.compile(spec, dtype=F64, seed=1)
    learner = pc.PCLearner(net, init="forward", T=1)
    x = torch.randn(8, 6, dtype=F64)
    logits = pc.BackpropTwin(net)(x)
    # a free CE node sits at softmax(μ) after the sweep
    torch.testing.assert_close(torch.softmax(logits, -1), learner.predict({"x": x})["y"])


def test_twin_of_a_conv_net_matches_the_forward_sweep() -> None:
    spec = _spec(
        [
            {"name": "img", "shape": [1, 8, 8], "role": "input"},
            {"name": "c", "shape": [2, 6, 6], "activation": "tanh"},
            {"name": "y", "shape": 3, "role": "output"},
        ],
        [
            {"source": "img", "target": "c", "op": "conv2d", "params": {"kernel_size": 3}},
            {"source": "c", "target": "y", "op": "dense"},
        ],
    )
    net = pc.compile(spec, dtype=F64, seed=2)
    x = torch.randn(3, 1, 8, 8, dtype=F64)
    got = pc.BackpropTwin(net)(x)
    want = pc.PCLearner(net, init="forward", T=1).predict({"img": x})["y"]
    torch.testing.assert_close(got, want)


def test_twin_trains_its_own_copy_of_the_weights() -> None:
    net = pc.compile(pc.mlp([4, 3, 2]), dtype=F64, seed=0)
    before = [p.detach().clone() for p in net.parameters()]
    twin = pc.BackpropTwin(net)
    opt = torch.optim.SGD(twin.parameters(), lr=0.5)
    loss = twin(torch.randn(5, 4, dtype=F64)).square().sum()
    loss.backward()
    opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(before, twin.parameters(), strict=True))


def test_twin_refuses_a_graph_without_a_forward_pass() -> None:
    net = pc.compile(pc.decoder([3, 4, 5]), seed=0)
    with pytest.raises(pc.ClampError, match=r"Proposition 3\.2"):
        pc.BackpropTwin(net)  # z is an unclamped root: no inputs at all


def test_twin_names_unknown_inputs() -> None:
    twin = pc.BackpropTwin(pc.compile(pc.mlp([4, 3, 2]), seed=0))
    with pytest.raises(pc.ClampError, match=r"\['h1'\] are not inputs"):
        twin({"h1": torch.zeros(1, 3)})
