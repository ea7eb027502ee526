"""The compiled inference program: its closed-form local gradients against plain autograd.

Expectations come from ``torch.autograd`` applied to the reference energy ``net.energy`` (paper
Eq. 1), never from the program's own output: for every op, activation, energy kind, precision,
DAGs and cyclic graphs, and several clamp sets,

- ``program.state_grad``  == ∂E/∂x on the free columns (0 on the clamped ones); free
  cross-entropy nodes are held at softmax(μ) by ``program.errors``, so the comparison is made at
  that held state, without their own term −w log softmax(μ),
- ``program.param_grads`` == ∂E/∂θ for every parameter,
- ``program.node_energies`` == ``net.node_energies`` (itself checked against a closed form).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from pcgraph.compiler import PCNetwork, compile, program_for
from pcgraph.schema import GraphSpec, chain, mlp

TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"
F64 = torch.float64
REL_TOL = 1e-5
ACTIVATIONS = [
    "identity",
    "relu",
    "leaky_relu",
    "tanh",
    "sigmoid",
    "gelu",
    "silu",
    "softplus",
    "elu",
]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Thousands of tiny ops: torch's thread pool only adds overhead (and stalls when the CPUs
    are shared), so these tests run on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- helpers -------------------------------------------------------------------------------
def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖ (absolute when b is exactly 0)."""
    scale = float(b.norm())
    return float((a - b).norm()) / (scale if scale > 0 else 1.0)


def random_states(net: PCNetwork, batch: int, *, seed: int = 1) -> torch.Tensor:
    """Random states of order 1 for every node (clamped ones included)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, net.state_size, generator=g, dtype=net.dtype)


def local_state_grad(net: PCNetwork, x: torch.Tensor, clamp: frozenset[str]) -> torch.Tensor:
    prog = program_for(net, clamp)
    buf = prog.prepare(x)
    sent = prog.errors(x, buf)
    prog.state_grad(x, buf, sent)
    prog.store(x, buf)  # held nodes (free CE) are written into x
    return prog.as_states(buf.grad)  # ∂E/∂x in the state's [B, D] layout


def autograd_state_grad(net: PCNetwork, x: torch.Tensor) -> torch.Tensor:
    x_ = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(net.energy(x_), x_)
    return g


def free_mask(net: PCNetwork, clamp: frozenset[str]) -> torch.Tensor:
    mask = torch.zeros(net.state_size, dtype=torch.bool)
    for n in net.nodes:
        if n.name not in clamp:
            mask[n.cols] = True
    return mask


def local_param_grads(net: PCNetwork, x: torch.Tensor, clamp: frozenset[str]) -> list[torch.Tensor]:
    prog = program_for(net, clamp)
    buf = prog.prepare(x)
    prog.errors(x, buf)
    net.zero_grad(set_to_none=True)
    prog.param_grads(x, buf)
    grads = [p.grad.clone() if p.grad is not None else None for p in net.parameters()]
    net.zero_grad(set_to_none=True)
    return grads


def autograd_param_grads(net: PCNetwork, x: torch.Tensor) -> list[torch.Tensor]:
    params = list(net.parameters())
    return list(torch.autograd.grad(net.energy(x.detach()), params))


def free_ce_nodes(net: PCNetwork, clamp: frozenset[str]) -> list[int]:
    """The free cross-entropy nodes: inference holds them at softmax(μ) instead of stepping."""
    return [n.index for n in net.nodes if n.energy == "cross_entropy" and n.name not in clamp]


def edge_of_param(name: str) -> int | None:
    """The edge of a dense network's parameter ``kernels.<edge index>.<...>``."""
    parts = name.split(".")
    return int(parts[1]) if parts[0] == "kernels" else None


def assert_local_matches_autograd(
    net: PCNetwork, clamp: frozenset[str], *, batch: int = 3, seed: int = 1
) -> None:
    """The full check: state gradients, parameter gradients and node energies.

    A free cross-entropy node y has E_y = −w Σ y log softmax(μ_y), linear in y: gradient steps
    on it never converge, so ``errors`` holds it at its prediction, writing y = softmax(μ_y)
    into x (there δ_y = w(y − softmax(μ_y) Σ y) = 0). The comparison is therefore made at that
    held state, and on y's own columns the local gradient is autograd's minus y's own term
    ∂E_y/∂y = −w log softmax(μ_y): 0 for a leaf, −σ'(y) ⊙ (messages of its children) otherwise.
    """
    x = random_states(net, batch, seed=seed)
    x_before = x.clone()
    mask = free_mask(net, clamp)
    ce = free_ce_nodes(net, clamp)
    ce_mask = torch.zeros(net.state_size, dtype=torch.bool)
    for i in ce:
        ce_mask[net.nodes[i].cols] = True

    local = local_state_grad(net, x, clamp)  # holds the free CE nodes in x
    held = x.clone()
    # only the free CE columns were written, and there x = softmax(μ) of the held state
    assert torch.equal(x[:, ~ce_mask], x_before[:, ~ce_mask]), "errors() wrote a non-CE node"
    for i in ce:
        p = torch.softmax(net.prediction(x, i).detach(), -1)
        torch.testing.assert_close(x[:, net.nodes[i].cols], p, rtol=1e-12, atol=1e-14)
        assert not torch.allclose(x_before[:, net.nodes[i].cols], p)  # it did move

    ce_in_edges = {e for i in ce for e in net.nodes[i].parents}
    ref = autograd_state_grad(net, x)
    other = mask & ~ce_mask
    assert rel_err(local[:, other], ref[:, other]) < REL_TOL, f"state grad, clamp={set(clamp)}"
    for i in ce:
        node = net.nodes[i]
        logp = torch.log_softmax(net.prediction(x, i).detach(), -1)
        expected = ref[:, node.cols] + node.precision * logp  # autograd minus the own term
        if not node.children:
            assert torch.all(local[:, node.cols] == 0), f"held leaf {node.name} got a gradient"
            assert float(expected.abs().max()) < 1e-10  # autograd agrees: nothing but the own term
        else:
            assert rel_err(local[:, node.cols], expected) < REL_TOL, f"held {node.name} messages"
    # clamped columns never receive a gradient (they must not move)
    assert torch.all(local[:, ~mask] == 0)

    if any(True for _ in net.parameters()):
        lp = local_param_grads(net, x, clamp)
        rp = autograd_param_grads(net, x)
        names = [n for n, _ in net.named_parameters()]
        for name, a, b in zip(names, lp, rp, strict=True):
            assert a is not None, f"no local gradient for {name}"
            if edge_of_param(name) in ce_in_edges:
                # into a held CE node: δ = 0, so ∂E/∂θ = 0 (autograd: rounding only)
                assert float(a.abs().max()) < 1e-12 and float(b.abs().max()) < 1e-12, name
                continue
            assert rel_err(a, b) < REL_TOL, f"param grad {name}, clamp={set(clamp)}"

    prog = program_for(net, clamp)
    buf = prog.prepare(x)
    prog.errors(x, buf)
    torch.testing.assert_close(
        prog.node_energies(buf), net.node_energies(x).detach(), rtol=1e-10, atol=1e-10
    )
    for i in ce:  # at the held state E_y = w · entropy of softmax(μ_y)
        node = net.nodes[i]
        logp = torch.log_softmax(net.prediction(x, i).detach(), -1)
        entropy = -(logp.exp() * logp).sum()
        torch.testing.assert_close(prog.node_energies(buf)[i], node.precision * entropy)
    # at the held state the program writes nothing more into the states
    assert torch.equal(x, held)


def spec(nodes: list[dict[str, Any]], edges: list[dict[str, Any]]) -> GraphSpec:
    return GraphSpec.from_dict({"name": "t", "nodes": nodes, "edges": edges})


# --- the reference energy itself (closed form) ---------------------------------------------
def test_reference_energy_closed_form_chain() -> None:
    """E of x0 → x1 (linear, tanh on x0) with precision 2: ½·2·‖x1 − W tanh(x0) − b‖²."""
    s = spec(
        [
            {"name": "x0", "shape": 4, "activation": "tanh"},
            {"name": "x1", "shape": 3, "precision": 2.0},
        ],
        [{"source": "x0", "target": "x1", "op": "linear"}],
    )
    net = compile(s, dtype=F64, seed=0)
    x = random_states(net, 5)
    w, b = net.kernels[0].weight, net.kernels[0].bias
    x0, x1 = x[:, :4], x[:, 4:]
    expected = 0.5 * 2.0 * ((x1 - torch.tanh(x0) @ w.T - b) ** 2).sum()
    torch.testing.assert_close(net.energy(x), expected)
    per_node = net.node_energies(x).detach()
    assert per_node.shape == (2,)
    assert float(per_node[0]) == 0.0  # a root has no energy


def test_reference_energy_closed_form_cross_entropy() -> None:
    """CE node: E = −w Σ_k x_k log softmax(μ)_k, summed over the batch."""
    s = spec(
        [
            {"name": "h", "shape": 4},
            {"name": "y", "shape": 3, "energy": "cross_entropy", "precision": 0.5},
        ],
        [{"source": "h", "target": "y", "op": "linear"}],
    )
    net = compile(s, dtype=F64, seed=0)
    x = random_states(net, 6)
    labels = torch.tensor([0, 1, 2, 2, 1, 0])
    x[:, 4:] = torch.nn.functional.one_hot(labels, 3).to(F64)
    mu = x[:, :4] @ net.kernels[0].weight.T + net.kernels[0].bias
    expected = 0.5 * torch.nn.functional.cross_entropy(mu, labels, reduction="sum")
    torch.testing.assert_close(net.energy(x), expected)


# --- every op ------------------------------------------------------------------------------
OP_SPECS: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {
    "linear": (
        [{"name": "a", "shape": 5, "activation": "tanh"}, {"name": "b", "shape": 4}],
        [{"source": "a", "target": "b", "op": "linear"}],
    ),
    "linear_nobias": (
        [{"name": "a", "shape": 5, "activation": "tanh"}, {"name": "b", "shape": 4}],
        [{"source": "a", "target": "b", "op": "linear", "bias": False}],
    ),
    "dense_image_to_vector": (
        [{"name": "a", "shape": [2, 3, 3], "activation": "tanh"}, {"name": "b", "shape": 4}],
        [{"source": "a", "target": "b", "op": "dense"}],
    ),
    "dense_vector_to_image": (
        [{"name": "a", "shape": 6, "activation": "tanh"}, {"name": "b", "shape": [2, 2, 3]}],
        [{"source": "a", "target": "b", "op": "dense"}],
    ),
    "conv2d": (
        [
            {"name": "a", "shape": [2, 7, 7], "activation": "tanh"},
            {"name": "b", "shape": [3, 4, 4]},
        ],
        [
            {
                "source": "a",
                "target": "b",
                "op": "conv2d",
                "params": {"kernel_size": 3, "stride": 2, "padding": 1},
            }
        ],
    ),
    "conv2d_dilated": (
        [
            {"name": "a", "shape": [2, 8, 8], "activation": "tanh"},
            {"name": "b", "shape": [3, 4, 4]},
        ],
        [
            {
                "source": "a",
                "target": "b",
                "op": "conv2d",
                "params": {"kernel_size": 3, "stride": 1, "padding": 0, "dilation": 2},
            }
        ],
    ),
    "conv_transpose2d": (
        [
            {"name": "a", "shape": [2, 4, 4], "activation": "tanh"},
            {"name": "b", "shape": [3, 8, 8]},
        ],
        [
            {
                "source": "a",
                "target": "b",
                "op": "conv_transpose2d",
                "params": {"kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1},
            }
        ],
    ),
    "conv_transpose2d_stride3": (
        [
            {"name": "a", "shape": [2, 3, 3], "activation": "tanh"},
            {"name": "b", "shape": [1, 10, 10]},
        ],
        [
            {
                "source": "a",
                "target": "b",
                "op": "conv_transpose2d",
                "params": {"kernel_size": 4, "stride": 3, "padding": 1, "output_padding": 2},
            }
        ],
    ),
    "identity": (
        [{"name": "a", "shape": 5, "activation": "tanh"}, {"name": "b", "shape": 5}],
        [{"source": "a", "target": "b", "op": "identity"}],
    ),
    "flatten": (
        [{"name": "a", "shape": [2, 2, 3], "activation": "tanh"}, {"name": "b", "shape": 12}],
        [{"source": "a", "target": "b", "op": "flatten"}],
    ),
    "reshape": (
        [{"name": "a", "shape": 12, "activation": "tanh"}, {"name": "b", "shape": [3, 2, 2]}],
        [{"source": "a", "target": "b", "op": "reshape"}],
    ),
}


@pytest.mark.parametrize("clamp", [(), ("a",), ("b",)], ids=["free", "source", "target"])
@pytest.mark.parametrize("name", list(OP_SPECS))
def test_local_gradients_every_op(name: str, clamp: tuple[str, ...]) -> None:
    nodes, edges = OP_SPECS[name]
    # a root in front of ``a`` gives ``a`` its own energy term too (own + message)
    root = {**nodes[0], "name": "r", "activation": "sigmoid"}
    e0 = {"source": "r", "target": "a", "op": "identity"}
    net = compile(spec([root, *nodes], [e0, *edges]), dtype=F64, seed=0)
    assert_local_matches_autograd(net, frozenset(clamp), batch=3)


def test_local_gradients_conv_transpose_output_padding_above_stride() -> None:
    nodes = [
        {"name": "a", "shape": [2, 5, 5], "activation": "tanh"},
        {"name": "b", "shape": [3, 10, 10]},
    ]
    edges = [
        {
            "source": "a",
            "target": "b",
            "op": "conv_transpose2d",
            "params": {"kernel_size": 3, "stride": 1, "dilation": 2, "output_padding": 1},
        }
    ]
    net = compile(spec(nodes, edges), dtype=F64, seed=0)
    assert_local_matches_autograd(net, frozenset({"b"}))


# --- every activation, energy kind and precision -------------------------------------------
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_local_gradients_every_activation(activation: str) -> None:
    s = chain(
        ["x", "h1", "h2", "y"],
        [4, 6, 5, 3],
        activations=["identity", activation, activation, "identity"],
    )
    net = compile(s, dtype=F64, seed=0)
    for clamp in [frozenset({"x"}), frozenset({"x", "y"}), frozenset()]:
        assert_local_matches_autograd(net, clamp, batch=4)


@pytest.mark.parametrize("energy", ["gaussian", "cross_entropy"])
@pytest.mark.parametrize("precision", [1.0, 0.3, 2.5])
@pytest.mark.parametrize("clamp", [("x", "y"), ("x",)], ids=["train", "predict"])
def test_local_gradients_energy_and_precision(
    energy: str, precision: float, clamp: tuple[str, ...]
) -> None:
    s = spec(
        [
            {"name": "x", "shape": 4, "role": "input"},
            {"name": "h", "shape": 6, "activation": "gelu", "precision": 1.7},
            {"name": "y", "shape": 3, "role": "output", "energy": energy, "precision": precision},
        ],
        [
            {"source": "x", "target": "h", "op": "linear"},
            {"source": "h", "target": "y", "op": "linear"},
            {"source": "x", "target": "y", "op": "linear"},
        ],
    )
    net = compile(s, dtype=F64, seed=0)
    assert_local_matches_autograd(net, frozenset(clamp), batch=5)


def test_cross_entropy_free_node_is_held_at_its_prediction() -> None:
    """A free CE node y is not stepped: E_y = −w Σ y log softmax(μ) is linear in y, so its
    gradient −w log softmax(μ) never vanishes. ``errors`` writes y = softmax(μ) into the states,
    where δ_y = w (y − softmax(μ) Σ y) = 0: y gets no gradient and sends no message, and E_y is
    w times the entropy of the prediction."""
    s = spec(
        [
            {"name": "h", "shape": 4},
            {"name": "y", "shape": 3, "energy": "cross_entropy", "precision": 2.0},
        ],
        [{"source": "h", "target": "y", "op": "linear"}],
    )
    net = compile(s, dtype=F64, seed=0)
    x = random_states(net, 4)
    h = x[:, :4].clone()
    mu = h @ net.kernels[0].weight.T + net.kernels[0].bias
    p = mu.exp() / mu.exp().sum(-1, keepdim=True)  # softmax by hand
    for clamp in (frozenset({"h"}), frozenset()):
        x = random_states(net, 4)
        prog = program_for(net, clamp)
        buf = prog.prepare(x)
        sent = prog.errors(x, buf)
        prog.store(x, buf)  # the held state, from the working states into x
        torch.testing.assert_close(x[:, 4:], p.detach())  # held at its prediction
        assert torch.equal(x[:, :4], h)  # h untouched
        assert float(prog.node_block(buf.delta, 1).abs().max()) < 1e-15  # δ_y = 0
        prog.state_grad(x, buf, sent)
        # y: no own gradient; h (clamped, or free but receiving δ_y = 0): nothing either
        assert float(buf.grad.abs().max()) < 1e-15
        entropy = -(p * p.log()).sum()
        torch.testing.assert_close(prog.node_energies(buf)[1], 2.0 * entropy.detach())


def test_cross_entropy_free_output_inference_closed_form() -> None:
    """r (clamped) → h → y (free CE). With y held, δ_y = 0, so h feels only its own error:
    h_T − μ_h = (1 − γ w_h)^T (h_0 − μ_h) with μ_h fixed by r, and y_T = softmax(W σ(h_T) + b)."""
    from pcgraph.engine import solve_inference

    s = spec(
        [
            {"name": "r", "shape": 3},
            {"name": "h", "shape": 4, "activation": "tanh", "precision": 1.5},
            {"name": "y", "shape": 5, "energy": "cross_entropy", "precision": 0.7},
        ],
        [
            {"source": "r", "target": "h", "op": "linear"},
            {"source": "h", "target": "y", "op": "linear"},
        ],
    )
    net = compile(s, dtype=F64, seed=0)
    x = random_states(net, 6)
    x0 = x.clone()
    k_h, k_y = net.kernels[0], net.kernels[1]
    mu_h = (x0[:, :3] @ k_h.weight.T + k_h.bias).detach()
    T, lr = 40, 0.1
    result = solve_inference(net, x, frozenset({"r"}), T, lr=lr)
    h_T = mu_h + (1 - lr * 1.5) ** T * (x0[:, 3:7] - mu_h)
    torch.testing.assert_close(x[:, 3:7], h_T, rtol=1e-10, atol=1e-12)
    logits = (torch.tanh(h_T) @ k_y.weight.T + k_y.bias).detach()
    p = torch.softmax(logits, -1)
    torch.testing.assert_close(x[:, 7:], p, rtol=1e-10, atol=1e-12)
    assert torch.equal(x[:, :3], x0[:, :3])
    energy = 0.5 * 1.5 * ((h_T - mu_h) ** 2).sum() - 0.7 * (p * p.log()).sum()
    torch.testing.assert_close(result.energy_after, energy, rtol=1e-10, atol=1e-12)


def test_free_cross_entropy_node_with_children_at_held_state() -> None:
    """A free CE node y with a child z: once y is held at softmax(μ_y), z's error, y's
    message from z and the node energies must all be those of the held state."""
    s = spec(
        [
            {"name": "r", "shape": 4},
            {"name": "y", "shape": 3, "energy": "cross_entropy", "activation": "tanh"},
            {"name": "z", "shape": 5},
        ],
        [
            {"source": "r", "target": "y", "op": "linear"},
            {"source": "y", "target": "z", "op": "linear"},
        ],
    )
    net = compile(s, dtype=F64, seed=0)
    assert_local_matches_autograd(net, frozenset({"r", "z"}))
    assert_local_matches_autograd(net, frozenset({"r"}))


@pytest.mark.parametrize("order", [("r", "y1", "y2"), ("r", "y2", "y1")], ids=["topo", "reversed"])
def test_chained_free_cross_entropy_nodes_held_at_a_consistent_state(
    order: tuple[str, ...],
) -> None:
    """r → y1 (CE) → y2 (CE), both free: y2's prediction reads σ(y1), so the held state needs
    y1 = softmax(μ_y1) first, then y2 = softmax(μ_y2(held y1)), whatever order the spec
    declares the nodes in."""
    nodes = {
        "r": {"name": "r", "shape": 4},
        "y1": {"name": "y1", "shape": 3, "energy": "cross_entropy", "activation": "tanh"},
        "y2": {"name": "y2", "shape": 5, "energy": "cross_entropy"},
    }
    s = spec(
        [nodes[n] for n in order],
        [
            {"source": "r", "target": "y1", "op": "linear"},
            {"source": "y1", "target": "y2", "op": "linear"},
        ],
    )
    net = compile(s, dtype=F64, seed=0)
    assert_local_matches_autograd(net, frozenset({"r"}))


# --- whole graphs: DAGs with skips, cycles, several clamp sets -----------------------------
GRAPH_CLAMPS = {
    "loop": [("x", "y"), ("x",), ("y",), ("x", "b"), ()],
    "fully_connected_groups": [("x", "y"), ("x",), ("x", "g2"), ("g1", "g3", "y")],
    "skip_mlp": [("x", "y"), ("x",), ("y",), ("x", "h2")],
    "dag_unclamped_root": [("x", "y"), ("x",), ("context", "y")],
    "decoder4_fashion": [("image",), ("z", "image"), ("h2",)],
    "associative_memory": [("upper", "lower"), ("upper",)],
    "mlp5_fashion": [("x", "y"), ("x",)],
}


@pytest.mark.parametrize(
    ("topology", "clamp"),
    [(t, c) for t, clamps in GRAPH_CLAMPS.items() for c in clamps],
)
def test_local_gradients_topologies(topology: str, clamp: tuple[str, ...]) -> None:
    net = compile(TOPOLOGIES / f"{topology}.yaml", dtype=F64, seed=0)
    assert_local_matches_autograd(net, frozenset(clamp), batch=2)


def test_local_gradients_conv_topology() -> None:
    net = compile(TOPOLOGIES / "alexnet_cifar10.yaml", dtype=F64, seed=0)
    assert_local_matches_autograd(net, frozenset({"image", "label"}), batch=2)
    assert_local_matches_autograd(net, frozenset({"image"}), batch=2)


def test_local_gradients_mixed_image_graph_with_cycle() -> None:
    """Conv, transposed conv, dense both ways, flatten/reshape, multi-parent and a cycle."""
    s = spec(
        [
            {"name": "img", "shape": [2, 6, 6], "role": "input"},
            {"name": "c", "shape": [3, 3, 3], "activation": "relu"},
            {"name": "f", "shape": 27, "activation": "elu"},
            {"name": "v", "shape": 5, "activation": "tanh", "precision": 0.5},
            {"name": "up", "shape": [2, 3, 3], "activation": "silu"},
            {"name": "rec", "shape": [2, 6, 6], "role": "output"},
            {"name": "y", "shape": 4, "role": "output", "energy": "cross_entropy"},
        ],
        [
            {
                "source": "img",
                "target": "c",
                "op": "conv2d",
                "params": {"kernel_size": 3, "stride": 2, "padding": 1},
            },
            {"source": "c", "target": "f", "op": "flatten"},
            {"source": "f", "target": "v", "op": "linear"},
            {"source": "v", "target": "up", "op": "dense"},
            {"source": "up", "target": "c", "op": "conv2d", "params": {"kernel_size": 1}},
            {
                "source": "up",
                "target": "rec",
                "op": "conv_transpose2d",
                "params": {"kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1},
            },
            {"source": "c", "target": "rec", "op": "dense"},
            {"source": "v", "target": "y", "op": "linear"},
            {"source": "f", "target": "y", "op": "dense", "bias": False},
        ],
    )
    net = compile(s, dtype=F64, seed=0)
    for clamp in [("img", "rec", "y"), ("img",), ("rec",), ()]:
        assert_local_matches_autograd(net, frozenset(clamp), batch=3)


def test_param_grads_accumulate() -> None:
    """param_grads adds to existing .grad (like backward), it does not overwrite it."""
    net = compile(TOPOLOGIES / "loop.yaml", dtype=F64, seed=0)
    clamp = frozenset({"x", "y"})
    x = random_states(net, 3)
    prog = program_for(net, clamp)
    buf = prog.prepare(x)
    prog.errors(x, buf)
    net.zero_grad(set_to_none=True)
    prog.param_grads(x, buf)
    prog.param_grads(x, buf)
    ref = autograd_param_grads(net, x)
    for p, r in zip(net.parameters(), ref, strict=True):
        assert rel_err(p.grad, 2 * r) < REL_TOL


def test_program_buffers_follow_batch_size_and_new_data() -> None:
    """Reusing the cached program on another batch size / other clamped data stays exact."""
    net = compile(TOPOLOGIES / "skip_mlp.yaml", dtype=F64, seed=0)
    clamp = frozenset({"x", "y"})
    for batch, seed in [(3, 1), (5, 2), (3, 3)]:
        x = random_states(net, batch, seed=seed)
        local = local_state_grad(net, x, clamp)
        ref = autograd_state_grad(net, x)
        mask = free_mask(net, clamp)
        assert rel_err(local[:, mask], ref[:, mask]) < REL_TOL


def test_float32_local_gradients_close() -> None:
    """The default dtype path agrees too, at float32 precision."""
    net = compile(TOPOLOGIES / "loop.yaml", dtype=torch.float32, seed=0)
    clamp = frozenset({"x", "y"})
    x = random_states(net, 4)
    local = local_state_grad(net, x, clamp)
    ref = autograd_state_grad(net, x)
    mask = free_mask(net, clamp)
    assert rel_err(local[:, mask], ref[:, mask]) < 1e-5


# --- the sparse (neuron-level) backend against its dense twin ------------------------------
def dense_twin(sparse: PCNetwork) -> PCNetwork:
    """A dense network with the sparse network's weights: W_e = W[target cols, source cols],
    each target's bias on its first biased in-edge (the sparse form sums them per neuron)."""
    dense = compile(sparse.spec, dtype=sparse.dtype, backend="dense", seed=0)
    rows, cols = sparse.edge_index
    w = torch.zeros(sparse.state_size, sparse.state_size, dtype=sparse.dtype)
    w[rows, cols] = sparse.weight.detach()
    has_bias: set[int] = set()
    with torch.no_grad():
        for e in dense.edges:
            src, dst = dense.nodes[e.source], dense.nodes[e.target]
            k = dense.kernels[e.index]
            k.weight.copy_(w[dst.cols, src.cols])
            if k.bias is not None:
                first = e.target not in has_bias
                k.bias.copy_(sparse.bias.detach()[dst.cols] if first else 0.0)
                has_bias.add(e.target)
    return dense


@pytest.mark.parametrize(
    ("topology", "clamp", "precision", "no_bias_into"),
    [
        ("loop", ("x", "y"), None, None),
        ("loop", ("x",), 0.4, "b"),
        ("dag_unclamped_root", ("x", "y"), None, "y"),
        ("associative_memory", ("upper",), 2.0, None),
        ("decoder4_fashion", ("image",), None, "h2"),
    ],
)
def test_sparse_backend_matches_dense_twin(
    topology: str, clamp: tuple[str, ...], precision: float | None, no_bias_into: str | None
) -> None:
    d = GraphSpec.from_yaml(TOPOLOGIES / f"{topology}.yaml").model_dump()
    if precision is not None:
        d["nodes"][-1]["precision"] = precision
    for edge in d["edges"]:
        if edge["target"] == no_bias_into:
            edge["bias"] = False
    s = GraphSpec.from_dict(d)
    sparse = compile(s, dtype=F64, backend="sparse", seed=0)
    dense = dense_twin(sparse)
    clamp_set = frozenset(clamp)
    x = random_states(sparse, 3)
    # the reference energy, and the sparse program's local gradients against it
    torch.testing.assert_close(sparse.node_energies(x).detach(), dense.node_energies(x).detach())
    mask = free_mask(sparse, clamp_set)
    local = local_state_grad(sparse, x, clamp_set)
    ref = autograd_state_grad(dense, x)
    assert rel_err(local[:, mask], ref[:, mask]) < REL_TOL
    assert torch.all(local[:, ~mask] == 0)
    prog = program_for(sparse, clamp_set)
    buf = prog.prepare(x)
    prog.errors(x, buf)
    torch.testing.assert_close(prog.node_energies(buf), dense.node_energies(x).detach())
    # parameter gradients: gather the dense per-edge gradients at the sparse entries
    sparse.zero_grad(set_to_none=True)
    prog.param_grads(x, buf)
    grads = torch.autograd.grad(dense.energy(x), list(dense.parameters()))
    by_param = dict(zip([id(p) for p in dense.parameters()], grads, strict=True))
    gw = torch.zeros(sparse.state_size, sparse.state_size, dtype=F64)
    gb = torch.zeros(sparse.state_size, dtype=F64)
    for e in dense.edges:
        src, dst = dense.nodes[e.source], dense.nodes[e.target]
        k = dense.kernels[e.index]
        gw[dst.cols, src.cols] = by_param[id(k.weight)]
        if k.bias is not None:
            gb[dst.cols] = by_param[id(k.bias)]
    rows, cols = sparse.edge_index
    assert rel_err(sparse.weight.grad, gw[rows, cols]) < REL_TOL
    assert rel_err(sparse.bias.grad, gb) < REL_TOL


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_sparse_backend_inference_and_forward_sweep_match_dense_twin(optimizer: str) -> None:
    from pcgraph.engine import solve_inference
    from pcgraph.init import ForwardInit, InitContext

    s = mlp([6, 8, 7, 3], activation="tanh")
    sparse = compile(s, dtype=F64, backend="sparse", seed=0)
    dense = dense_twin(sparse)
    clamp = frozenset({"x", "y"})
    xs = random_states(sparse, 4)
    xd = xs.clone()
    ForwardInit().init(xs, InitContext(sparse, clamp))
    ForwardInit().init(xd, InitContext(dense, clamp))
    torch.testing.assert_close(xs, xd)
    rs = solve_inference(sparse, xs, clamp, 12, optimizer=optimizer, lr=0.05, trace=True)
    rd = solve_inference(dense, xd, clamp, 12, optimizer=optimizer, lr=0.05, trace=True)
    torch.testing.assert_close(xs, xd, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(rs.trace, rd.trace, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("topology", ["loop", "skip_mlp", "decoder4_fashion"])
def test_float32_node_energies_match_the_reference_energy(topology: str) -> None:
    """float32 per-node energies (one native call where the kernels are built) equal
    ``net.node_energies`` of the same states evaluated in float64."""
    net = compile(TOPOLOGIES / f"{topology}.yaml", dtype=torch.float32, seed=0)
    clamp = frozenset(n.name for n in net.nodes if not n.parents)  # the roots
    x = random_states(net, 4)
    prog = program_for(net, clamp)
    buf = prog.prepare(x)
    prog.errors(x, buf)
    prog.store(x, buf)  # a free CE node is held at softmax(μ): the reference reads it from x
    got = prog.node_energies(buf).double()
    net64 = compile(TOPOLOGIES / f"{topology}.yaml", dtype=F64, seed=0)
    net64.load_state_dict({k: v.double() for k, v in net.state_dict().items()})
    want = net64.node_energies(x.double()).detach()
    assert rel_err(got, want) < 1e-5


def test_clamped_input_read_in_place_where_the_products_allow() -> None:
    """A clamped identity sender whose products run on BLAS is read as its own columns of x
    (no copy per batch), and the fixed prediction and weight gradient it feeds stay exact."""
    net = compile(mlp([6, 5, 3]), dtype=F64, seed=0)  # float64: BLAS, never oneDNN
    clamp = frozenset({"x", "y"})
    x = random_states(net, 3)
    prog = program_for(net, clamp)
    buf = prog.prepare(x)
    j = net.node("x").index
    assert buf.sent[j].data_ptr() == x[:, net.node("x").cols].data_ptr()
    prog.errors(x, buf)
    net.zero_grad(set_to_none=True)
    prog.param_grads(x, buf, accumulate=False)
    for p, r in zip(net.parameters(), autograd_param_grads(net, x), strict=True):
        assert rel_err(p.grad, r) < REL_TOL
    x2 = random_states(net, 3, seed=5)  # new data in the same buffer: the view follows it
    x.copy_(x2)
    buf = prog.prepare(x)
    local = local_state_grad(net, x, clamp)
    mask = free_mask(net, clamp)
    assert rel_err(local[:, mask], autograd_state_grad(net, x)[:, mask]) < REL_TOL


@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_param_grads_overwrite_whatever_grad_tensors_are_there(dtype: torch.dtype) -> None:
    """``accumulate=False`` writes ∂E/∂θ over the existing ``.grad`` (NaNs in it ignored),
    again after ``zero_grad(set_to_none=True)`` and after new ``.grad`` tensors are assigned:
    always the autograd gradient, never a stale tensor's."""
    net = compile(TOPOLOGIES / "skip_mlp.yaml", dtype=dtype, seed=0)
    clamp = frozenset({"x", "y"})
    x = random_states(net, 4).to(dtype)
    prog = program_for(net, clamp)
    ref = autograd_param_grads(net, x)
    tol = REL_TOL if dtype == F64 else 1e-4
    for step in range(4):
        if step == 2:
            net.zero_grad(set_to_none=True)
        if step == 3:
            for p in net.parameters():
                p.grad = torch.full_like(p, float("nan"))
        buf = prog.prepare(x)
        prog.errors(x, buf)
        prog.param_grads(x, buf, accumulate=False)
        for p, r in zip(net.parameters(), ref, strict=True):
            assert rel_err(p.grad, r) < tol, step


def test_new_parameter_data_is_used_by_the_bound_steps() -> None:
    """Weights given new storage (``p.data = …``) between two inferences on the same buffer:
    the second inference uses them (the bound products follow), as a network built with those
    weights from the start does."""
    from pcgraph.engine import solve_inference
    from pcgraph.init import ForwardInit, InitContext

    def run(net: PCNetwork, x: torch.Tensor) -> torch.Tensor:
        clamp = frozenset({"x", "y"})
        sweep = ForwardInit().init(x, InitContext(net, clamp))
        return solve_inference(net, x, clamp, 4, lr=0.1, sweep=sweep).states.clone()

    net = compile(mlp([6, 5, 4, 3], activation="tanh"), dtype=F64, seed=0)
    other = compile(mlp([6, 5, 4, 3], activation="tanh"), dtype=F64, seed=7)
    x0 = random_states(net, 3)
    x = x0.clone()
    run(net, x)
    for k, k2 in zip(net.kernels, other.kernels, strict=True):
        k.weight.data = k2.weight.detach().clone()  # type: ignore[union-attr]
        k.bias.data = k2.bias.detach().clone()  # type: ignore[union-attr]
    x.copy_(x0)
    got = run(net, x)
    want = run(other, x0.clone())
    assert torch.allclose(got, want, atol=1e-12, rtol=0)


def test_sparse_float32_node_energies_match_the_reference_over_batch_sizes() -> None:
    """The sparse backend's ε is a flat [B, D] (not node-blocked): its per-node energies in
    float32 equal ``net.node_energies`` for each batch size in turn, and after the buffers of
    earlier batch sizes have been dropped and their memory reused."""
    net = compile(mlp([6, 8, 7, 3], activation="tanh"), backend="sparse", seed=0)
    prog = program_for(net, frozenset({"x", "y"}))
    g = torch.Generator().manual_seed(0)
    for b, scale in [(4, 1.0), (2, 1e3), (5, 1.0), (6, 1.0), (7, 1.0), (8, 1.0), (3, 1.0)]:
        x = torch.randn(b, net.state_size, generator=g) * scale
        buf = prog.prepare(x)
        prog.errors(x, buf)
        got = prog.node_energies(buf).double()
        want = net.node_energies(x).detach().double()
        assert rel_err(got, want) < 1e-5, b
        _ = [torch.full((4 * net.state_size,), 7.0) for _ in range(20)]  # reuse freed memory


def test_weight_gradients_follow_new_weight_data_between_sweep_and_inference() -> None:
    """``p.data = …`` between a forward sweep and the inference that reuses it, then more
    updates on new data: every weight gradient equals autograd's at the states reached."""
    from pcgraph.engine import solve_inference

    net = compile(mlp([6, 5, 4, 3], activation="tanh"), seed=0, dtype=F64)
    clamp = frozenset({"x", "h1", "y"})  # a clamped tanh sender: its σ(x) is a copy per batch
    prog = program_for(net, clamp)
    h2 = net.node("h2").index
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, net.state_size, dtype=F64, generator=g)
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    for change, new_data in [(False, False), (True, False), (False, True)]:
        if new_data:
            x.copy_(torch.randn(x.shape, dtype=F64, generator=g))
        sweep = prog.forward_sweep(x, [h2])
        if change:
            for p in net.parameters():
                p.data = p.data.clone() * 1.1
        result = solve_inference(net, x, clamp, 2, lr=0.1, sweep=sweep)
        prog.param_grads(x, result.buffers, accumulate=False)
        with torch.enable_grad():
            ref = torch.autograd.grad(net.energy(result.states), list(net.parameters()))
        for p, r in zip(net.parameters(), ref, strict=True):
            assert rel_err(p.grad, r) < REL_TOL, (change, new_data)


def test_weight_gradients_of_an_earlier_batch_size_are_its_own() -> None:
    """Two inferences of different batch sizes, then the weight gradients of the first: they
    are the first states' gradients (the program's views follow the buffers passed)."""
    from pcgraph.engine import PCLearner

    net = compile(mlp([6, 5, 4, 3], activation="tanh"), seed=0, dtype=F64)
    learner = PCLearner(net, init="forward", T=2)
    g = torch.Generator().manual_seed(1)

    def batch(b: int) -> dict[str, torch.Tensor]:
        return {
            "x": torch.randn(b, 6, dtype=F64, generator=g),
            "y": torch.randn(b, 3, dtype=F64, generator=g),
        }

    r1 = learner.infer(batch(4), train=True)
    net.zero_grad(set_to_none=True)
    r1.program.param_grads(r1.states, r1.buffers, accumulate=False)  # creates the .grad
    r2 = learner.infer(batch(7), train=True)
    r2.program.param_grads(r2.states, r2.buffers, accumulate=False)
    r1.program.param_grads(r1.states, r1.buffers, accumulate=False)
    with torch.enable_grad():
        ref = torch.autograd.grad(net.energy(r1.states), list(net.parameters()))
    for p, r in zip(net.parameters(), ref, strict=True):
        assert rel_err(p.grad, r) < REL_TOL


def test_bound_state_keeps_the_steps_a_capture_replays_on() -> None:
    """What ``bound_state`` returned still computes on the first buffers after the program was
    bound to another batch size (and its caches rebuilt): a captured CUDA graph replays those
    steps, so the tensors they write must stay alive and keep their meaning."""
    import gc

    net = compile(mlp([6, 5, 4, 3], activation="tanh"), seed=0)
    clamp = frozenset({"x", "y"})
    prog = program_for(net, clamp)
    x = random_states(net, 3).float()
    buf = prog.prepare(x)
    kept = prog.bound_state()
    sent_steps = kept.sent_steps  # type: ignore[attr-defined]
    assert sent_steps, "tanh senders have bound σ steps"
    prog.prepare(random_states(net, 5).float())  # rebinds every cache for batch 5
    gc.collect()
    _ = [torch.full((4096,), 9.0) for _ in range(20)]  # memory freed would be reused here
    for step in sent_steps.values():
        step()
    for j in sent_steps:
        want = torch.tanh(x[:, net.nodes[j].cols])
        assert torch.allclose(prog.node_block(buf.sent_buf, j), want, atol=1e-6)
