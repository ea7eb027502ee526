"""Every implementation of the sparse backend's products equals the dense math, and the backend
with torch-geometric on equals its dense twin (``pcgraph.compiler.sparse_mp``)."""

from __future__ import annotations

import pytest
import torch
from test_program import dense_twin, random_states

import pcgraph as pc
from pcgraph import fast
from pcgraph.compiler import compile, program_for
from pcgraph.compiler.sparse_mp import (
    DEFAULT,
    IMPLEMENTATIONS,
    SparseOperands,
    choose,
)
from pcgraph.engine import solve_inference
from pcgraph.init import ForwardInit, InitContext
from pcgraph.schema import mlp

CASES = [(op, name) for op, table in IMPLEMENTATIONS.items() for name in table]
TOLERANCE = {torch.float64: (1e-12, 1e-12), torch.float32: (1e-5, 1e-5)}


@pytest.fixture(autouse=True)
def _restore_switch() -> object:
    before = fast.enabled()
    yield
    pc.fast_paths(before)


def random_graph(
    d: int, density: float, dtype: torch.dtype, *, seed: int
) -> tuple[SparseOperands, torch.Tensor]:
    """A random W [d, d] without duplicate entries whose first rows and last columns are empty
    (neurons without parents / without children), as operands and as a dense matrix."""
    g = torch.Generator().manual_seed(seed)
    dense = torch.randn(d, d, generator=g, dtype=dtype)
    keep = torch.rand(d, d, generator=g) < density
    keep[: d // 5] = False  # empty rows
    keep[:, -(d // 5) :] = False  # empty columns
    dense = dense * keep
    w = dense.to_sparse_coo().coalesce()
    return SparseOperands.from_edges(w.indices(), w.values(), d), dense


def expected(op: str, w: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The op from the dense W: s Wᵀ, δ W, or −(δᵀ s) at W's entries (in row-major order)."""
    if op == "predictions":
        return a @ w.t()
    if op == "messages":
        return a @ w
    rows, cols = w.nonzero().t()
    return -(a.t() @ b)[rows, cols]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize(("op", "name"), CASES)
@pytest.mark.parametrize(("d", "density", "batch"), [(40, 0.1, 1), (60, 0.3, 7), (90, 0.05, 70)])
def test_every_implementation_equals_the_dense_math(
    op: str, name: str, dtype: torch.dtype, d: int, density: float, batch: int
) -> None:
    ops, w = random_graph(d, density, dtype, seed=d)
    g = torch.Generator().manual_seed(1)
    a = torch.randn(batch, d, generator=g, dtype=dtype)
    b = torch.randn(batch, d, generator=g, dtype=dtype)
    impl = IMPLEMENTATIONS[op][name]
    assert impl.equals in IMPLEMENTATIONS[op]
    got = impl.fn(ops, a) if op != "weight_grad" else impl.fn(ops, a, b)
    want = expected(op, w, a, b)
    rtol, atol = TOLERANCE[dtype]
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol * float(want.abs().max()))


@pytest.mark.parametrize(("op", "name"), CASES)
def test_an_edgeless_graph_gives_zeros(op: str, name: str) -> None:
    ops, w = random_graph(10, 0.0, torch.float64, seed=0)
    assert ops.edge_index.shape == (2, 0)
    a = torch.randn(3, 10, dtype=torch.float64)
    impl = IMPLEMENTATIONS[op][name]
    got = impl.fn(ops, a) if op != "weight_grad" else impl.fn(ops, a, a)
    assert torch.equal(got, expected(op, w, a, a))


def test_the_rule_is_fixed_and_off_means_the_reference() -> None:
    cpu = torch.device("cpu")
    for op in IMPLEMENTATIONS:
        assert DEFAULT[op] in IMPLEMENTATIONS[op]
        # the same arguments always give the same choice: nothing is timed
        with pc.fast_paths(True):
            assert [choose(op, b, cpu) for b in (1, 64, 4096)] == [DEFAULT[op]] * 3
        assert choose(op, 16, torch.device("meta")) == "torch"
        with pc.fast_paths(False):
            assert choose(op, 1024, cpu) == "torch"
    with pytest.raises(KeyError, match=r"unknown sparse op 'bias'.*predictions"):
        choose("bias", 1, cpu)


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "plain"])
@pytest.mark.parametrize("batch", [4, 64])
def test_sparse_step_with_learning_equals_the_dense_twin(fast: bool, batch: int) -> None:
    # forward init, 12 inference steps, then ∂E/∂θ at x(T): the dense backend's autograd on the
    # same weights is the reference
    pc.fast_paths(fast)
    sparse = compile(mlp([6, 8, 7, 3], activation="tanh"), dtype=torch.float64, backend="sparse")
    dense = dense_twin(sparse)
    clamp = frozenset({"x", "y"})
    xs = random_states(sparse, batch)
    xd = xs.clone()
    ForwardInit().init(xs, InitContext(sparse, clamp))
    ForwardInit().init(xd, InitContext(dense, clamp))
    solve_inference(sparse, xs, clamp, 12, lr=0.05)
    solve_inference(dense, xd, clamp, 12, lr=0.05)
    torch.testing.assert_close(xs, xd, rtol=1e-10, atol=1e-12)

    prog = program_for(sparse, clamp)
    buf = prog.prepare(xs)
    prog.errors(xs, buf)
    sparse.zero_grad(set_to_none=True)
    prog.param_grads(xs, buf)
    params = list(dense.parameters())
    grads = dict(zip(params, torch.autograd.grad(dense.energy(xd), params), strict=True))
    gw = torch.zeros(sparse.state_size, sparse.state_size, dtype=torch.float64)
    gb = torch.zeros(sparse.state_size, dtype=torch.float64)
    for e in dense.edges:  # one in-edge per node in an MLP: each bias is its target's
        src, dst = dense.nodes[e.source], dense.nodes[e.target]
        gw[dst.cols, src.cols] = grads[dense.kernels[e.index].weight]
        gb[dst.cols] = grads[dense.kernels[e.index].bias]
    rows, cols = sparse.edge_index
    torch.testing.assert_close(sparse.weight.grad, gw[rows, cols], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(sparse.bias.grad, gb, rtol=1e-10, atol=1e-12)
