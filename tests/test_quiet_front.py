"""The front of zero errors after a forward sweep (``ClampPlan.quiet_schedule``).

After forward initialization every swept node sits at ε = 0, and the error spreads back from
the clamped outputs one edge per step. The engine skips the products that would multiply those
exact zeros. The expectations here come from the math, never from the engine:

- states, energies and weight gradients equal an autograd reference that recomputes everything
  from ``net.energy`` (float64, to 1e-10), for SGD, momentum and Adam neurons, several graphs,
  and T from 0 to past the depth;
- the schedule's zero set at each step is exactly the set of nodes whose error is 0 in that
  reference;
- no matrix product of the loop has an all-zero operand (a product that the math says is 0).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from pcgraph import fast
from pcgraph.analysis import forward_levels
from pcgraph.compiler import PCNetwork, compile, program_for
from pcgraph.compiler.bound import Sweep
from pcgraph.compiler.plan import clamp_plan
from pcgraph.engine import PCLearner, solve_inference
from pcgraph.init import ForwardInit, HybridInit, InitContext
from pcgraph.ops import native
from pcgraph.schema import GraphSpec, mlp

TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"
F64 = torch.float64


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def chain(activation: str = "tanh", output_energy: str = "gaussian") -> PCNetwork:
    spec = mlp([6, 5, 5, 5, 5, 3], activation=activation, output_energy=output_energy)
    return compile(spec, dtype=F64, seed=0)


def swept_states(
    net: PCNetwork, clamp: frozenset[str], batch: int = 4
) -> tuple[torch.Tensor, Sweep | None]:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(batch, net.state_size, generator=g, dtype=F64)
    for n in net.nodes:  # a one-hot-ish target, so that cross-entropy outputs are valid
        if n.energy == "cross_entropy" and n.name in clamp:
            x[:, n.cols] = torch.softmax(x[:, n.cols], -1)
    sweep = ForwardInit().init(x, InitContext(net, clamp))
    return x, sweep


def energy_grad(net: PCNetwork, x: torch.Tensor) -> torch.Tensor:
    x_ = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(net.energy(x_), x_)
    return g


def free_mask(net: PCNetwork, clamp: frozenset[str]) -> torch.Tensor:
    mask = torch.zeros(net.state_size, dtype=F64)
    for n in net.nodes:
        if n.name not in clamp:
            mask[n.cols] = 1.0
    return mask


def reference(
    net: PCNetwork, x0: torch.Tensor, clamp: frozenset[str], T: int, optimizer: str, lr: float
) -> tuple[torch.Tensor, list[set[int]]]:
    """x(T) by autograd on the whole energy (torch's own SGD/Adam for the neuron update), and
    the nodes with ε exactly 0 at each of the T + 1 evaluations."""
    mask = free_mask(net, clamp)
    x = x0.clone().requires_grad_(True)
    opt: torch.optim.Optimizer
    if optimizer == "sgd":
        opt = torch.optim.SGD([x], lr=lr)
    elif optimizer == "momentum":
        opt = torch.optim.SGD([x], lr=lr, momentum=0.9)
    else:
        opt = torch.optim.Adam([x], lr=lr)
    zeros: list[set[int]] = []

    def zero_now() -> set[int]:
        with torch.no_grad():
            return {
                n.index
                for n in net.nodes
                # exact in the engine; the reference sums a multi-parent prediction in
                # another order than the sweep, so its "0" is a rounding of ~1e-17
                if n.parents
                and float((x[:, n.cols] - net.prediction(x, n.index)).abs().max()) < 1e-13
            }

    for _ in range(T):
        zeros.append(zero_now())
        opt.zero_grad()
        g = energy_grad(net, x.detach()) * mask
        # a gradient that is exactly 0 in exact arithmetic (no error reaches the node yet)
        # comes out of autograd as rounding of ~1e-17, which Adam would turn into a step of
        # γ·1e-17/eps; the engine's exact 0 is the math, so the reference rounds it to 0 too
        x.grad = torch.where(g.abs() < 1e-13, torch.zeros_like(g), g)
        opt.step()
    zeros.append(zero_now())
    return x.detach(), zeros


GRAPHS = [
    ("chain-tanh", lambda: chain("tanh"), ("x", "y")),
    ("chain-relu", lambda: chain("relu"), ("x", "y")),
    ("skip_mlp", lambda: compile(TOPOLOGIES / "skip_mlp.yaml", dtype=F64, seed=0), ("x", "y")),
    ("chain-ce", lambda: chain("tanh", "cross_entropy"), ("x", "y")),
    ("fan-stacked", lambda: fan(), ("x", "y")),
]


def fan() -> PCNetwork:
    """x → a → b1 … b4 → y: four same-shaped a → b_k edges run as one stacked product."""
    nodes = [
        {"name": "x", "shape": 6, "role": "input"},
        {"name": "a", "shape": 5, "activation": "tanh"},
        *[{"name": f"b{k}", "shape": 5, "activation": "tanh"} for k in range(1, 5)],
        {"name": "y", "shape": 3, "role": "output"},
    ]
    edges = [
        {"source": "x", "target": "a", "op": "linear"},
        *[{"source": "a", "target": f"b{k}", "op": "linear"} for k in range(1, 5)],
        *[{"source": f"b{k}", "target": "y", "op": "linear"} for k in range(1, 5)],
    ]
    net = compile(
        GraphSpec.model_validate({"name": "fan", "nodes": nodes, "edges": edges}), dtype=F64, seed=0
    )
    assert program_for(net, frozenset({"x", "y"})).stacks, "the a → b_k edges should stack"
    return net


CASES = [
    pytest.param(name, make, clamp, T, opt, id=f"{name}-T{T}-{opt}")
    for name, make, clamp in GRAPHS
    for T in (0, 1, 2, 3, 8)
    for opt in ("sgd", "momentum", "adam")
]


@pytest.mark.parametrize(("name", "make", "clamp", "T", "optimizer"), CASES)
def test_front_matches_the_full_autograd_reference(
    name: str, make, clamp: tuple[str, ...], T: int, optimizer: str
) -> None:  # type: ignore[no-untyped-def]
    net = make()
    c = frozenset(clamp)
    x, sweep = swept_states(net, c)
    want, _ = reference(net, x, c, T, optimizer, lr=0.05)
    # the weights are unchanged since the sweep, so it holds and the front applies
    assert_inference_is(want, net, x, c, T, optimizer, sweep)


def assert_inference_is(
    want: torch.Tensor,
    net: PCNetwork,
    x: torch.Tensor,
    c: frozenset[str],
    T: int,
    optimizer: str,
    sweep: Sweep | None,
) -> None:
    """Inference from ``x`` with ``sweep`` handed on ends at the reference's x(T) ``want``,
    with its energy, and the weight gradients from the buffers it left are autograd's there."""
    got = solve_inference(net, x, c, T, optimizer=optimizer, lr=0.05, sweep=sweep)
    assert got.buffers is not None
    assert torch.allclose(got.states, want, atol=1e-10, rtol=0)
    assert float(got.energy_after) == pytest.approx(
        float(net.energy(want).detach()), rel=1e-10, abs=1e-12
    )
    with torch.enable_grad():
        ref = torch.autograd.grad(net.energy(want), list(net.parameters()))
    got.program.param_grads(got.states, got.buffers, accumulate=False)
    for p, r in zip(net.parameters(), ref, strict=True):
        assert p.grad is not None
        assert torch.allclose(p.grad, r, atol=1e-10, rtol=0)


def hybrid_states(
    net: PCNetwork, K: int, clamp: frozenset[str], batch: int = 6
) -> tuple[torch.Tensor, Sweep | None, HybridInit]:
    """x(0) from hybrid(K) with class means taken from one observed batch of random states
    (3 classes; the output clamped to one-hot labels)."""
    g = torch.Generator().manual_seed(5)
    labels = torch.arange(batch) % 3
    out = net.node("y").cols

    def states() -> torch.Tensor:
        x = torch.randn(batch, net.state_size, generator=g, dtype=F64)
        x[:, out] = torch.nn.functional.one_hot(labels, 3).to(F64)
        return x

    init = HybridInit(K=K)
    init.observe(states(), InitContext(net, clamp, labels=labels))
    x = states()
    return x, init.init(x, InitContext(net, clamp, labels=labels)), init


HYBRID_CASES = [
    *[("chain-ce", K) for K in (1, 2, 3)],
    *[("fan-stacked", K) for K in (1, 2)],  # K 2: every hidden node swept, no class means
]


@pytest.mark.parametrize(("graph", "K"), HYBRID_CASES, ids=[f"{g}-K{k}" for g, k in HYBRID_CASES])
@pytest.mark.parametrize("T", [0, 1, 2, 5])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_hybrid_sweep_front_matches_the_full_autograd_reference(
    graph: str, K: int, T: int, optimizer: str
) -> None:
    """hybrid(K) writes the class means, then sweeps the nodes at level ≤ K and hands that
    sweep on: those nodes start at ε = 0, the class-mean nodes above do not. Inference from it
    skips only exact zeros: states, energy and weight gradients equal the autograd reference,
    and the schedule's zero sets are the reference's exact zeros at every step."""
    net = chain("tanh", "cross_entropy") if graph == "chain-ce" else fan()
    c = frozenset({"x", "y"})
    x, sweep, _ = hybrid_states(net, K, c)
    assert sweep is not None, "hybrid hands its forward part's sweep on"
    prog = program_for(net, c)
    swept = prog.swept(x, prog.buffers(x.shape[0]), sweep)
    levels = forward_levels(net.graph, c)
    assert swept == {net.node_index[n] for n, lv in levels.items() if 1 <= lv <= K}
    want, zeros = reference(net, x, c, T, optimizer, lr=0.05)
    schedule = clamp_plan(net, c).quiet_schedule(swept, T)
    for t, q in enumerate(schedule):
        assert set(q.zero) == zeros[t], f"step {t}"
    assert_inference_is(want, net, x, c, T, optimizer, sweep)


@pytest.mark.parametrize(("name", "make", "clamp"), GRAPHS, ids=[g[0] for g in GRAPHS])
def test_schedule_zero_sets_are_the_exact_zeros_of_the_reference(
    name: str, make, clamp: tuple[str, ...]
) -> None:  # type: ignore[no-untyped-def]
    net = make()
    c = frozenset(clamp)
    x, sweep = swept_states(net, c)
    T = 6
    _, zeros = reference(net, x, c, T, "sgd", lr=0.05)
    prog = program_for(net, c)
    swept = prog.swept(x, prog.buffers(x.shape[0]), sweep)
    assert swept
    schedule = clamp_plan(net, c).quiet_schedule(swept, T)
    assert len(schedule) == T + 1
    for t, q in enumerate(schedule):
        assert set(q.zero) == zeros[t], f"step {t}"


def test_chain_front_moves_one_layer_per_step() -> None:
    """x → h1 → h2 → h3 → h4 → y: at evaluation t the errors of h1 … h_{4−t} are still 0."""
    net = chain()
    c = frozenset({"x", "y"})
    hidden = [net.node_index[f"h{k}"] for k in range(1, 5)]
    swept = frozenset(hidden)
    schedule = clamp_plan(net, c).quiet_schedule(swept, 6)
    assert [sorted(q.zero) for q in schedule] == [hidden[: 4 - t] for t in range(4)] + [[], [], []]


class _Products(TorchDispatchMode):
    """Counts matrix products and those with an all-zero operand."""

    OPS: ClassVar[set[str]] = {
        "mm",
        "addmm",
        "bmm",
        "matmul",
        "linear",
        "_linear_pointwise",
        "baddbmm",
    }

    def __init__(self) -> None:
        super().__init__()
        self.total = 0
        self.with_zero_operand = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        if name in self.OPS:
            self.total += 1
            operands = args[1:3] if name in ("addmm", "baddbmm") else args  # not the added term
            mats = [a for a in operands if isinstance(a, torch.Tensor) and a.dim() >= 2]
            if any(not bool(m.ne(0).any()) for m in mats):
                self.with_zero_operand += 1
        return func(*args, **kwargs)


@pytest.mark.parametrize("T", [1, 2, 8])
def test_no_product_multiplies_an_exact_zero(T: int) -> None:
    net = chain()
    c = frozenset({"x", "y"})
    x, sweep = swept_states(net, c)
    prog = program_for(net, c)
    with _Products() as count:
        result = solve_inference(net, x, c, T, lr=0.05, sweep=sweep)
        prog.param_grads(result.states, result.buffers, accumulate=False)
    assert count.total > 0
    assert count.with_zero_operand == 0


@pytest.mark.parametrize("T", [1, 2, 3, 5])
def test_a_free_root_with_a_prior_moves_from_the_start(T: int) -> None:
    """z is a free root with a prior (½ p ‖z − m‖²): its own error moves it at step 0, so the
    sweep's children of z are no longer at ε = 0 after it (found by review: the front took z
    as still until a child's error reached it). Against the autograd reference of the whole
    energy, from a sweep of h1 … h3 with z where it stands."""
    nodes = [
        {"name": "x", "shape": 4, "role": "input"},
        {"name": "z", "shape": 3, "prior": {"mean": 0.5, "precision": 2.0}},
        {"name": "h1", "shape": 5, "activation": "tanh"},
        {"name": "h2", "shape": 5, "activation": "tanh"},
        {"name": "h3", "shape": 5, "activation": "tanh"},
        {"name": "y", "shape": 3, "role": "output"},
    ]
    pairs = [("x", "h1"), ("z", "h1"), ("h1", "h2"), ("h2", "h3"), ("h3", "y")]
    edges = [{"source": a, "target": b, "op": "linear"} for a, b in pairs]
    spec = GraphSpec.model_validate({"name": "prior_root", "nodes": nodes, "edges": edges})
    net = compile(spec, dtype=F64, seed=0)
    c = frozenset({"x", "y"})
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, net.state_size, generator=g, dtype=F64)
    order = clamp_plan(net, c).forward_order(c | {"z"})  # as memory init orders its sweep
    sweep = program_for(net, c).forward_sweep(x, order)
    want, _ = reference(net, x, c, T, "sgd", lr=0.1)
    got = solve_inference(net, x, c, T, lr=0.1, sweep=sweep)
    assert torch.allclose(got.states, want, atol=1e-10, rtol=0)


@pytest.mark.parametrize("T", [1, 2, 4, 8])
def test_chain_runs_only_the_products_the_math_needs(T: int) -> None:
    """x → h1 → h2 → h3 → h4 → y after a forward sweep, counted from the math: h_k starts
    moving after step 4 − k (the front), so at evaluation t the moved nodes are h4 … h_{5−t}.
    A prediction changes only once its parent has moved: y's at every evaluation (its error
    is never 0), h_k's (k = 2 … 4) from t = 6 − k on (h1's parent x is clamped: fixed). A
    message δ_n W goes to a free parent from t = 0 (y) or once n has moved (h_k: t ≥ 5 − k),
    at t < T. The weight gradients at x(T): the edges into y and into every h_k that has
    moved. A node that moved while its parent had not keeps the sweep's μ: no product."""
    net = chain()
    c = frozenset({"x", "y"})
    x, sweep = swept_states(net, c)
    prog = program_for(net, c)
    predictions = (T + 1) + sum(max(0, T + 1 - (6 - k)) for k in (2, 3, 4))
    messages = T + sum(max(0, T - (5 - k)) for k in (2, 3, 4))
    weights = 1 + sum(1 for k in (1, 2, 3, 4) if 5 - k <= T)
    with _Products() as count:
        result = solve_inference(net, x, c, T, lr=0.05, sweep=sweep)
        prog.param_grads(result.states, result.buffers, accumulate=False)
    assert count.total == predictions + messages + weights


def test_learner_with_forward_init_matches_reference_weights() -> None:
    """PCLearner updates (forward init, T = 2 < depth, AdamW, alternating batch sizes) equal
    the same updates done by autograd: inference by reference(), gradients by backward."""
    net = chain()
    twin = chain()
    twin.load_state_dict(net.state_dict())
    learner = PCLearner(
        net,
        init="forward",
        T=2,
        lr_neurons=0.05,
        optimizer=torch.optim.AdamW(net.parameters(), lr=1e-2),
    )
    opt = torch.optim.AdamW(twin.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(5)
    c = frozenset({"x", "y"})
    for batch in (4, 3, 4, 3):  # buffers and step plans per batch size, reused in turn
        xb = torch.randn(batch, 6, generator=g, dtype=F64)
        yb = torch.randn(batch, 3, generator=g, dtype=F64)
        learner.train_step({"x": xb, "y": yb})
        x = twin.new_states(batch)
        x[:, twin.nodes[twin.node_index["x"]].cols] = xb
        x[:, twin.nodes[twin.node_index["y"]].cols] = yb
        ForwardInit().init(x, InitContext(twin, c))
        xT, _ = reference(twin, x, c, 2, "sgd", lr=0.05)
        opt.zero_grad()
        twin.energy(xT).backward()
        for p in twin.parameters():  # exact zeros, not rounding, for AdamW (see reference())
            assert p.grad is not None
            p.grad[p.grad.abs() < 1e-13] = 0.0
        opt.step()
    for p, q in zip(net.parameters(), twin.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-10, rtol=0)


@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_a_sweep_over_non_finite_values_takes_no_error_as_zero(dtype: torch.dtype) -> None:
    """x_i = μ_i gives ε_i = 0 only for finite values (NaN − NaN is NaN): after NaN data or a
    NaN weight, the monitor must see the NaN instead of a front of zeros (in float32 the
    sweep's write into x answers whether the swept states are finite)."""
    from pcgraph.errors import ClampError, EnergyError

    net = compile(mlp([6, 5, 5, 5, 5, 3], activation="tanh"), dtype=dtype, seed=0)
    c = frozenset({"x", "y"})
    learner = PCLearner(net, init="forward", T=2, lr_neurons=0.05)
    g = torch.Generator().manual_seed(0)
    xb = torch.randn(3, 6, generator=g, dtype=dtype)
    yb = torch.randn(3, 3, generator=g, dtype=dtype)
    xb[2, 1] = float("nan")
    with pytest.raises(ClampError, match=r"data for node 'x' holds NaN .*sample 2"):
        learner.train_step({"x": xb, "y": yb})
    # inference with only the input clamped: every free node is swept, none carries error
    xb[2, 1] = 0.0
    with torch.no_grad():
        kernel = net.kernels[net.edges[1].index]  # h1 → h2
        kernel.weight[0, 0] = float("nan")  # type: ignore[index]
    with pytest.raises(EnergyError, match="non-finite"):
        learner.infer({"x": xb}, clamp={"x"})
    assert c  # the train clamp set is untouched by the query above


@pytest.mark.parametrize(("name", "make", "clamp"), GRAPHS, ids=[g[0] for g in GRAPHS])
def test_check_reports_the_engines_error_front(name: str, make, clamp: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    """``pcgraph check`` (analysis, no torch) and the engine's schedule agree step by step."""
    from pcgraph.analysis import error_front

    net = make()
    c = frozenset(clamp)
    x, sweep = swept_states(net, c)
    prog = program_for(net, c)
    swept = prog.swept(x, prog.buffers(x.shape[0]), sweep)
    names = [n.name for n in net.nodes]
    engine = [
        [names[i] for i in sorted(q.zero)]
        for q in clamp_plan(net, c).quiet_schedule(swept, 12)
        if q.zero
    ]
    assert error_front(net.spec, c) == engine


def test_check_says_which_weights_get_no_gradient_at_small_T() -> None:
    from pcgraph.analysis import analyze

    text = analyze(mlp([6, 5, 5, 5, 5, 3]), "train", T=2).summary()
    assert "every weight gets a gradient from T = 4 on" in text
    assert "at T=2 the weights into h1, h2 get none" in text
    assert "get none" not in analyze(mlp([6, 5, 5, 5, 5, 3]), "train", T=4).summary()


@pytest.mark.parametrize(("name", "make", "clamp"), GRAPHS, ids=[g[0] for g in GRAPHS])
def test_sgd_steps_only_what_the_front_reached_and_reads_no_other_gradient(
    name: str, make, clamp: tuple[str, ...]
) -> None:  # type: ignore[no-untyped-def]
    # plain SGD after a sweep writes and steps only the nodes with a possibly non-zero
    # gradient (Program.update_parts): with every other ∂E/∂x column poisoned with NaN, x(T)
    # still equals the autograd reference, so those columns are neither read nor stepped
    net = make()
    c = frozenset(clamp)
    for T in (1, 2):
        x, sweep = swept_states(net, c)
        want, _ = reference(net, x, c, T, "sgd", lr=0.05)
        prog = program_for(net, c)
        buf = prog.prepare(x, sweep=sweep)
        buf.grad.fill_(float("nan"))
        got = solve_inference(net, x, c, T, optimizer="sgd", lr=0.05, sweep=sweep)
        assert torch.allclose(got.states, want, atol=1e-10, rtol=0), (name, T)
        if name.startswith("chain") and T == 1:  # h1 … h3 are still at x = μ: never written
            assert bool(torch.isnan(got.buffers.grad).any())


@pytest.mark.parametrize("activation", ["tanh", "gelu", "relu", "sigmoid", "identity"])
def test_fused_float32_sgd_steps_match_autograd(activation: str) -> None:
    # float32 on the CPU: the nodes with one linear child take their whole SGD step in one
    # native pass (steps.sgd_message_step). Against the autograd path (which fuses nothing)
    # in float32, and against float64 autograd: the same states to float32 rounding
    if not native.available():
        pytest.skip(
            "no C compiler: nothing is fused"
            if fast.enabled()
            else "the fast paths are off (PCGRAPH_FAST=0): nothing is fused"
        )
    spec = mlp([12, 16, 16, 16, 16, 5], activation=activation, output_energy="gaussian")
    c = frozenset({"x", "y"})
    for T in (1, 3, 8):
        results = {}
        first = compile(spec, dtype=torch.float32, seed=0)  # its weights, for every run
        for dtype, mode in (
            (torch.float32, "local"),
            (torch.float32, "autograd"),
            (F64, "autograd"),
        ):
            net = compile(spec, dtype=dtype, seed=0)
            with torch.no_grad():  # the float32 network's weights, exactly
                for p, q in zip(net.parameters(), first.parameters(), strict=True):
                    p.copy_(q)
            g = torch.Generator().manual_seed(5)
            x = torch.randn(32, net.state_size, generator=g).to(dtype)
            sweep = ForwardInit().init(x, InitContext(net, c))
            r = solve_inference(
                net,
                x,
                c,
                T,
                lr=0.1,
                grad_mode=mode,
                sweep=sweep,
            )
            results[(dtype, mode)] = r.states.double()
            if mode == "local":
                steps = r.program.bound.gradient_steps  # type: ignore[attr-defined]
                assert steps is not None and any(
                    steps.fused(q, 0.1) for q in (frozenset(), *steps._quiet)
                ), "nothing was fused"
        fused = results[(torch.float32, "local")]
        want = results[(F64, "autograd")]
        assert torch.allclose(fused, results[(torch.float32, "autograd")], atol=2e-5, rtol=0)
        assert torch.allclose(fused, want, atol=2e-5, rtol=0), (activation, T)


@pytest.mark.parametrize(("name", "make", "clamp"), GRAPHS[:3], ids=[g[0] for g in GRAPHS[:3]])
@pytest.mark.parametrize("T", [0, 1, 8])
def test_weight_gradients_stay_exact_over_updates_whatever_grad_tensors_are_there(
    name: str, make, clamp: tuple[str, ...], T: int
) -> None:  # type: ignore[no-untyped-def]
    """The same front update four times in a row, the weight gradients written over ``.grad``
    each time: the first creates them, the next reuse them (edges the front has not reached are
    zeroed, the rest overwritten), then ``.grad`` is replaced by NaN-filled tensors and then set
    to None. Each time: the autograd gradient at x(T), exactly 0 where the error is 0."""
    net = make()
    c = frozenset(clamp)
    x0, _ = swept_states(net, c)
    want, _ = reference(net, x0, c, T, "sgd", lr=0.05)
    with torch.enable_grad():
        ref = torch.autograd.grad(net.energy(want), list(net.parameters()))
    x, ctx = torch.empty_like(x0), InitContext(net, c)  # one buffer: the steps stay bound
    for update in range(4):
        if update == 2:
            for p in net.parameters():
                p.grad = torch.full_like(p, float("nan"))
        if update == 3:
            net.zero_grad(set_to_none=True)
        x.copy_(x0)
        sweep = ForwardInit().init(x, ctx)  # the sweep again, on the same buffer
        got = solve_inference(net, x, c, T, lr=0.05, sweep=sweep)
        assert torch.equal(got.states, want) or torch.allclose(got.states, want, atol=1e-10)
        got.program.param_grads(got.states, got.buffers, accumulate=False)
        for p, r in zip(net.parameters(), ref, strict=True):
            assert p.grad is not None
            assert torch.allclose(p.grad, r, atol=1e-10, rtol=0), (update, p.shape)
