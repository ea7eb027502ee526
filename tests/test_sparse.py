"""Neuron-level graphs compile to sparse message passing whose memory grows with edges."""

from __future__ import annotations

import pytest
import torch

import pcgraph as pc
from pcgraph.compiler import program_for
from pcgraph.compiler.sparse import SparsePCNetwork
from pcgraph.errors import SpecError


def neuron_graph(n: int, edges_per_node: int, *, seed: int = 0) -> pc.GraphSpec:
    """n single neurons; the first 5% are inputs, the last 5% outputs; random sparse wiring."""
    g = torch.Generator().manual_seed(seed)
    k = max(n // 20, 1)
    roles = ["input"] * k + ["latent"] * (n - 2 * k) + ["output"] * k
    nodes = [
        {"name": f"n{i}", "shape": 1, "activation": "tanh", "role": r} for i, r in enumerate(roles)
    ]
    src = torch.randint(0, n, (n * edges_per_node,), generator=g)
    dst = torch.randint(k, n, (n * edges_per_node,), generator=g)  # inputs are roots
    pairs = {(int(a), int(b)) for a, b in zip(src, dst, strict=True) if a != b}
    feeders = torch.randint(0, n - k, (k,), generator=g)
    pairs |= {(int(f), n - k + j) for j, f in enumerate(feeders)}  # every output is predicted
    return pc.GraphSpec.from_dict(
        {
            "name": f"neurons{n}",
            "nodes": nodes,
            "edges": [{"source": f"n{a}", "target": f"n{b}"} for a, b in sorted(pairs)],
        }
    )


def tensor_numels(net: pc.PCNetwork, batch: int) -> list[int]:
    prog = program_for(net, net.resolve_clamp("train"))
    buf = prog.buffers(batch)
    tensors = [*net.parameters(), *net.buffers(), buf.eps, buf.delta, buf.grad]
    return [t.numel() for t in tensors]


def test_thousand_neurons_compile_sparse_and_learn() -> None:
    spec = neuron_graph(1000, 4)
    net = pc.compile(spec, seed=0)
    assert isinstance(net, SparsePCNetwork)  # auto picks sparse for many tiny groups
    assert net.weight.numel() == len(spec.edges)
    assert net.edge_index.shape == (2, len(spec.edges))
    learner = pc.PCLearner(net, init="zero", T=8, lr_neurons=0.05, clamp="train")
    g = torch.Generator().manual_seed(1)
    data = {name: torch.rand(16, 1, generator=g) for name in learner.clamp}
    first = float(learner.train_step(data).energy_after)
    for _ in range(30):
        last = float(learner.train_step(data).energy_after)
    assert last < first


def test_memory_grows_with_edges_not_with_n_squared() -> None:
    # the same number of edges on 4x more neurons: no tensor may grow like N² (a dense N×N
    # matrix would be 16x larger); the largest tensor is the [B, N] state or the edge list
    batch = 8
    small, large = neuron_graph(500, 8), neuron_graph(2000, 2)
    sizes = {}
    for name, spec in (("small", small), ("large", large)):
        net = pc.compile(spec, seed=0, backend="sparse")
        n = len(spec.nodes)
        numels = tensor_numels(net, batch)
        assert max(numels) < n * n / 10, f"{name}: a tensor of N²-scale size"
        assert max(numels) <= max(2 * len(spec.edges), batch * n)
        sizes[name] = sum(numels)
    ratio_edges = len(large.edges) / len(small.edges)
    ratio_nodes = len(large.nodes) / len(small.nodes)
    # total memory follows edges + batch·N, far below the 16x of N²
    assert sizes["large"] / sizes["small"] < 2 * max(ratio_edges, ratio_nodes)


def test_sparse_backend_refuses_unsupported_ops_with_the_edge_named() -> None:
    spec = pc.GraphSpec.from_yaml("topologies/skip_mlp.yaml")  # has an identity edge
    with pytest.raises(SpecError, match=r"h1→h3.*identity"):
        pc.compile(spec, backend="sparse")


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(SpecError, match="unknown backend 'gpu'"):
        pc.compile("topologies/mlp5_fashion.yaml", backend="gpu")


def test_auto_keeps_dense_for_layered_networks() -> None:
    net = pc.compile("topologies/mlp5_fashion.yaml")
    assert not isinstance(net, SparsePCNetwork)


def test_sparse_autograd_and_local_gradients_agree_with_unbiased_edges() -> None:
    # neurons fed only by bias-free edges have no bias: both gradient paths must leave it at 0
    nodes = [
        {"name": f"n{i}", "shape": 1, "activation": "tanh", "role": "input" if i < 2 else "latent"}
        for i in range(8)
    ]
    edges = [
        {"source": f"n{a}", "target": f"n{b}", "bias": (a + b) % 2 == 0}
        for a, b in [(0, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7), (6, 7), (2, 5)]
    ]
    spec = pc.GraphSpec.from_dict({"name": "s", "nodes": nodes, "edges": edges})
    net = pc.compile(spec, seed=0, backend="sparse", dtype=torch.float64)
    x = torch.randn(4, net.state_size, dtype=torch.float64)
    prog = program_for(net, net.resolve_clamp("predict"))
    buf = prog.prepare(x)
    prog.errors(x, buf)
    net.zero_grad()
    prog.param_grads(x, buf)
    local = [p.grad.clone() for p in net.parameters()]  # type: ignore[union-attr]
    net.zero_grad()
    net.energy(x).backward()
    for a, b in zip(local, (p.grad for p in net.parameters()), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    unbiased = net.bias_mask == 0
    assert bool(unbiased.any()) and float(net.bias.grad[unbiased].abs().max()) == 0.0  # type: ignore[index]


def test_torch_geometric_is_imported_by_the_sparse_backend_only() -> None:
    """A dense compile leaves torch_geometric unimported (its import costs time and warns);
    the sparse backend imports it for its one ``coalesce`` and shows none of its warnings."""
    import subprocess
    import sys

    code = (
        "import sys, warnings\n"
        "warnings.simplefilter('always')\n"
        "import pcgraph as pc\n"
        "pc.compile(pc.mlp([4, 3, 2]))\n"
        "assert 'torch_geometric' not in sys.modules, 'imported by a dense compile'\n"
        "with warnings.catch_warnings(record=True) as seen:\n"
        "    warnings.simplefilter('always')\n"
        "    pc.compile(pc.mlp([4, 3, 2]), backend='sparse')\n"
        "assert 'torch_geometric' in sys.modules\n"
        "assert not seen, [str(w.message) for w in seen]\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
