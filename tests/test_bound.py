"""The bound program and the sweep's explicit hand-off (pcgraph/compiler/bound.py).

A program binds to its operands (states, buffers, parameters' storage, the fast switch) and
gets a new, immutable bound program when any of them changes; a forward sweep returns a
:class:`Sweep` that the inference after it reuses only while x and the weights are unchanged.
Every expectation is the autograd reference: T plain gradient steps on the total energy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
import torch

import pcgraph as pc
from pcgraph import fast
from pcgraph.compiler import PCNetwork, compile, program_for
from pcgraph.compiler.bound import BoundProgram, Sweep
from pcgraph.engine import PCLearner, solve_inference
from pcgraph.init import ForwardInit, InitContext
from pcgraph.schema import mlp

F64 = torch.float64
CLAMP = frozenset({"x", "y"})
LR, T = 0.05, 3


def chain() -> PCNetwork:
    return compile(mlp([6, 5, 5, 5, 3], activation="tanh"), dtype=F64, seed=0)


def reference(net: PCNetwork, x0: torch.Tensor, clamp: frozenset[str]) -> torch.Tensor:
    """T steps x ← x − γ ∂E/∂x on the free columns, by autograd of the total energy."""
    free = torch.zeros(net.state_size, dtype=x0.dtype)
    for n in net.nodes:
        if n.name not in clamp:
            free[n.cols] = 1.0
    x = x0.detach().clone()
    for _ in range(T):
        x_ = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(net.energy(x_), x_)
        x = x - LR * g * free
    return x


def swept(net: PCNetwork, seed: int = 0) -> tuple[torch.Tensor, Sweep | None]:
    x = torch.randn(4, net.state_size, dtype=F64, generator=torch.Generator().manual_seed(seed))
    return x, ForwardInit().init(x, InitContext(net, CLAMP))


def test_a_forward_sweep_returns_what_the_inference_reuses() -> None:
    net = chain()
    x, sweep = swept(net)
    assert isinstance(sweep, Sweep)
    prog = program_for(net, CLAMP)
    h = {net.node(name).index for name in ("h1", "h2", "h3")}
    assert sweep.nodes == h  # the hidden nodes sit at x = μ: ε = 0 exactly
    assert prog.swept(x, prog.buffers(4), sweep) == h  # type: ignore[attr-defined]
    want = reference(net, x, CLAMP)
    got = solve_inference(net, x, CLAMP, T, lr=LR, sweep=sweep)
    assert torch.allclose(got.states, want, atol=1e-12, rtol=0)


def _touch_x(net: PCNetwork, x: torch.Tensor) -> None:
    x[:, net.node("h2").cols] += 0.3  # an in-place write: x's version moves


def _touch_weight(net: PCNetwork, x: torch.Tensor) -> None:
    with torch.no_grad():
        next(iter(net.parameters())).mul_(1.1)  # in place: the parameter's version moves


def _new_weight_data(net: PCNetwork, x: torch.Tensor) -> None:
    p = next(iter(net.parameters()))
    p.data = p.data.clone() * 0.9  # new storage: the program binds again


def _other_batch(net: PCNetwork, x: torch.Tensor) -> None:
    program_for(net, CLAMP).prepare(torch.zeros(7, net.state_size, dtype=F64))


@pytest.mark.parametrize(
    "change",
    [_touch_x, _touch_weight, _new_weight_data, _other_batch],
    ids=["x-in-place", "weight-in-place", "weight-new-data", "other-batch-bound-between"],
)
def test_a_sweep_that_no_longer_holds_is_not_reused(
    change: Callable[[PCNetwork, torch.Tensor], None],
) -> None:
    """Whatever changed between the sweep and the inference, the states reached are the
    autograd reference's from the changed x and weights (nothing of the sweep is reused where
    that would be wrong: a stale fixed prediction, a front of zeros that are no longer 0)."""
    net = chain()
    x, sweep = swept(net)
    change(net, x)
    prog = program_for(net, CLAMP)
    if change is not _other_batch:
        assert prog.swept(x, prog.buffers(4), sweep) == frozenset()  # type: ignore[attr-defined]
    want = reference(net, x, CLAMP)
    got = solve_inference(net, x, CLAMP, T, lr=LR, sweep=sweep)
    assert torch.allclose(got.states, want, atol=1e-12, rtol=0)


def test_the_fast_switch_between_sweep_and_inference_binds_again() -> None:
    net = chain()
    x, sweep = swept(net)
    prog = program_for(net, CLAMP)
    before = prog.bound_state()
    with pc.fast_paths(not fast.enabled()):  # the other value, whichever is set
        want = reference(net, x, CLAMP)
        got = solve_inference(net, x, CLAMP, T, lr=LR, sweep=sweep)
        assert prog.bound_state() is not before  # a new binding for the other switch value
    assert torch.allclose(got.states, want, atol=1e-12, rtol=0)


def test_a_sweep_of_another_clamp_set_is_not_reused() -> None:
    net = chain()
    x, sweep = swept(net)  # the program of {x, y}
    other = frozenset({"x"})  # generation: y free
    x2 = x.clone()
    want = reference(net, x2, other)
    got = solve_inference(net, x2, other, T, lr=LR, sweep=sweep)
    assert torch.allclose(got.states, want, atol=1e-12, rtol=0)


def test_bind_makes_a_new_immutable_program_only_when_an_operand_changes() -> None:
    net = chain()
    prog = program_for(net, CLAMP)
    x = torch.randn(4, net.state_size, dtype=F64)
    prog.prepare(x)
    first = prog.bound_state()
    assert isinstance(first, BoundProgram)
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.xv = []  # type: ignore[misc]
    prog.prepare(x)
    assert prog.bound_state() is first  # the same operands: the same binding
    x.add_(1.0)  # new contents, the same storage: still the same binding
    prog.prepare(x)
    assert prog.bound_state() is first
    prog.prepare(x.clone())  # other storage: a new one
    assert prog.bound_state() is not first


def test_the_learner_hands_its_sweep_to_inference() -> None:
    """``PCLearner.infer`` with forward init: the inference starts from the sweep's front (the
    program is asked about the sweep the initializer returned, and finds it holding), and
    reaches the autograd reference."""
    net = chain()
    learner = PCLearner(net, init="forward", T=T, lr_neurons=LR)
    prog = program_for(net, CLAMP)
    seen: list[frozenset[int]] = []
    original = prog.swept

    def spy(x: torch.Tensor, buf: object, sweep: Sweep | None) -> frozenset[int]:
        found = original(x, buf, sweep)  # type: ignore[arg-type]
        seen.append(found)
        return found

    prog.swept = spy  # type: ignore[method-assign]
    g = torch.Generator().manual_seed(2)
    data = {"x": torch.randn(4, 6, dtype=F64, generator=g), "y": torch.randn(4, 3, dtype=F64)}
    x0 = net.new_states(4)
    net.write(x0, data)
    ForwardInit().init(x0, InitContext(net, CLAMP))
    want = reference(net, x0, CLAMP)
    got = learner.infer(data, train=True).states
    assert seen and seen[-1] == {net.node(n).index for n in ("h1", "h2", "h3")}
    assert torch.allclose(got, want, atol=1e-12, rtol=0)
