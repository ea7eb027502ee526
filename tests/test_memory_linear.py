"""The memory's linear path: x_i(0) = softmax(β (ô Q + b) Kᵀ) V + o W (``linear=True``).

Expectations come from the formula written out by hand, from linear algebra (a least-squares fit
with B ≤ M + obs_dim unknowns per output and a full-rank design matrix is exact; with B > M the
retrieval alone cannot be), and from the cost model (o W is read in parallel with o Q: no extra
sequential matrix multiplication)."""

from __future__ import annotations

import io

import pytest
import torch

from pcgraph import PCLearner, compile
from pcgraph.errors import InitError
from pcgraph.init.hopfield import HopfieldMemory
from pcgraph.init.memory import MemoryInit
from pcgraph.schema import decoder

F64 = torch.float64


def hand(mem: HopfieldMemory, o: torch.Tensor) -> torch.Tensor:
    """softmax(β (ô Q + b) Kᵀ) per head, heads averaged, times V; plus o W (raw o)."""
    s = (o - o.mean(-1, keepdim=True)) / (o.std(-1, keepdim=True) + 1e-6)
    q = s @ mem.query + mem.bias
    hd = q.shape[1] // mem.heads
    attn = sum(
        torch.softmax(
            mem.beta * q[:, h * hd : (h + 1) * hd] @ mem.keys[:, h * hd : (h + 1) * hd].T, -1
        )
        for h in range(mem.heads)
    )
    assert mem.linear is not None
    return (attn / mem.heads) @ mem.values + o @ mem.linear


def memory(linear: bool, *, patterns: int = 4, obs: int = 16, out: int = 3) -> HopfieldMemory:
    g = torch.Generator().manual_seed(0)
    return HopfieldMemory(
        obs, out, patterns=patterns, heads=2, embed_dim=8, beta=None, linear=linear, generator=g
    ).to(F64)


def test_linear_path_is_added_to_the_retrieval() -> None:
    mem = memory(True)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        mem.values.copy_(torch.randn(mem.values.shape, generator=g, dtype=F64))
        assert mem.linear is not None
        mem.linear.copy_(torch.randn(mem.linear.shape, generator=g, dtype=F64))
    o = torch.rand(5, 16, generator=g, dtype=F64)
    torch.testing.assert_close(mem(o), hand(mem, o))
    assert memory(False).linear is None  # the default is the retrieval alone


def test_fit_with_the_linear_path_reproduces_more_states_than_patterns() -> None:
    """B = 12 states, M = 4 patterns: V = A⁺H leaves a residual (rank A ≤ 4 < 12); with the
    linear path [A, o] is 12 × 20 of rank 12, so [V; W] = [A, o]⁺ H is exact."""
    g = torch.Generator().manual_seed(2)
    o = torch.rand(12, 16, generator=g, dtype=F64)
    states = torch.randn(12, 3, generator=g, dtype=F64)
    alone, both = memory(False), memory(True)
    alone.fit_values(o, states)
    both.fit_values(o, states)
    with torch.no_grad():
        assert float((alone(o) - states).abs().max()) > 1e-2
        torch.testing.assert_close(both(o), states, atol=1e-9, rtol=0)


def test_linear_memory_round_trips_a_checkpoint_and_costs_no_extra_smm() -> None:
    net = compile(decoder([6, 8, 8, 12], activation="tanh"), dtype=F64, seed=0)
    options = {"patterns": 16, "heads": 2, "embed_dim": 8, "linear": True}
    learner = PCLearner(net, init="memory", clamp="generate", T=4, init_options=options)
    plain = PCLearner(
        compile(decoder([6, 8, 8, 12], activation="tanh"), dtype=F64, seed=0),
        init="memory",
        clamp="generate",
        T=4,
        init_options={**options, "linear": False},
    )
    g = torch.Generator().manual_seed(3)
    for _ in range(3):
        data = {"image": torch.rand(8, 12, generator=g, dtype=F64)}
        learner.train_step(data)
        plain.train_step(data)
    # o W is read beside o Q: the same sequential matrix multiplications per update
    assert learner.smm_total == plain.smm_total > 0
    images = torch.rand(8, 12, generator=g, dtype=F64)
    before = learner.infer({"image": images}, clamp={"image"}, T=0).states
    buf = io.BytesIO()
    torch.save(learner.initializer.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    fresh = PCLearner(net, init="memory", clamp="generate", T=4, init_options=options)
    fresh.initializer.load_state_dict(state)
    after = fresh.infer({"image": images}, clamp={"image"}, T=0).states
    torch.testing.assert_close(after, before, atol=0, rtol=0)


def test_linear_option_must_be_a_bool() -> None:
    with pytest.raises(InitError, match=r"memory: linear must be True or False, got 'yes'"):
        MemoryInit(linear="yes")  # type: ignore[arg-type]


def test_memory_and_weights_learn_from_gradients_at_the_same_point() -> None:
    """One update with memory init: the weights move by −lr ∇_θ E(x(T)) and the memory by Adam's
    first step on ∇_m E(S(m(o))) / B, both at the weights inference ran with (the memory's
    training before the weight step, and not disturbing it)."""
    net = compile(decoder([6, 8, 8, 12], activation="tanh"), dtype=F64, seed=0)
    lr, mem_lr = 0.1, 1e-2
    options = {"patterns": 16, "heads": 2, "embed_dim": 8, "linear": True, "lr": mem_lr}
    learner = PCLearner(
        net,
        init="memory",
        clamp="generate",
        T=4,  # z is 3 steps from the image: the first batch moves it, and the memory fits V, W
        lr_neurons=0.05,
        optimizer=torch.optim.SGD(net.parameters(), lr=lr),
        init_options=options,
    )
    g = torch.Generator().manual_seed(5)
    learner.train_step({"image": torch.rand(8, 12, generator=g, dtype=F64)})  # the fit of V, W
    data = {"image": torch.rand(8, 12, generator=g, dtype=F64)}
    init = learner.initializer
    assert isinstance(init, MemoryInit)
    states = learner.infer(data, train=True).states.clone()
    ctx = learner.context(learner.clamp, train=True)
    weights = list(net.parameters())
    bank = init.bank(ctx)
    assert bank.optimizer is not None and not bank.optimizer.state  # no Adam step yet
    mems = [p for p in bank.memories.parameters() if p.requires_grad]
    with torch.enable_grad():
        grad_w = torch.autograd.grad(net.energy(states), weights)
        o = init.observations(states, ctx)
        grad_m = torch.autograd.grad(init.memory_loss(states, o, ctx) / 8, mems)
    w0 = [p.detach().clone() for p in weights]
    m0 = [p.detach().clone() for p in mems]
    learner.train_step(data)
    for p, before, grad in zip(weights, w0, grad_w, strict=True):
        torch.testing.assert_close(p.detach(), before - lr * grad, atol=1e-12, rtol=0)
    for p, before, grad in zip(mems, m0, grad_m, strict=True):  # Adam, step 1: −lr g / (|g| + ε)
        expected = before - mem_lr * grad / (grad.abs() + 1e-8)
        torch.testing.assert_close(p.detach(), expected, atol=1e-9, rtol=0)


@pytest.mark.parametrize("schedule", ["standard", "incremental"])
def test_kept_init_graph_trains_as_the_reference(schedule: str) -> None:
    """The fast path that keeps x(0) = S(m(o)) from init for the memory's loss trains the
    memory and the weights as the reference, which computes x(0) again in observe: the same
    function of the same observations, memories and weights (float64, so the two orders of
    operations agree to rounding). Under the incremental schedule the weights move during
    inference, so the kept x(0) is not the reference's and must not be used."""
    from pcgraph import fast_paths

    def run(fast: bool) -> tuple[list[torch.Tensor], list[float], bool]:
        net = compile(decoder([6, 8, 8, 12], activation="tanh"), dtype=F64, seed=0)
        options = {"patterns": 16, "heads": 2, "embed_dim": 8, "linear": True, "lr": 1e-2}
        learner = PCLearner(
            net,
            init="memory",
            clamp="generate",
            T=4,
            lr_neurons=0.05,
            schedule=schedule,
            optimizer=torch.optim.SGD(net.parameters(), lr=0.05),
            init_options=options,
        )
        init = learner.initializer
        assert isinstance(init, MemoryInit)
        g = torch.Generator().manual_seed(3)
        losses, kept = [], False
        with fast_paths(fast):
            for _ in range(5):
                learner.train_step({"image": torch.rand(8, 12, generator=g, dtype=F64)})
                losses.append(init.last_loss)
                learner.infer({"image": torch.rand(8, 12, generator=g, dtype=F64)}, train=True)
                kept = kept or init._kept is not None
                init._kept = None
        bank = next(iter(init.banks.values()))
        params = [*net.parameters(), *bank.memories.parameters()]
        return [p.detach().clone() for p in params], losses, kept

    fast_params, fast_losses, kept = run(True)
    ref_params, ref_losses, ref_kept = run(False)
    assert kept and not ref_kept  # the fast path ran, and only with the switch on
    # the first batch fits V and W (no loss); every later one takes a gradient step
    assert fast_losses[0] is None and ref_losses[0] is None
    assert None not in fast_losses[1:] and None not in ref_losses[1:]
    assert fast_losses[1:] == pytest.approx(ref_losses[1:], rel=1e-12, abs=0)
    for a, b in zip(fast_params, ref_params, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)
