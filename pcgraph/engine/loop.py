"""The eager inference loop that the runners execute: T steps of errors, state gradient and
neuron update, with the error front after a forward sweep, backtracking, Heun's two-stage
steps and the tolerance stop (see :func:`eager_loop`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch

from pcgraph.compiler.plan import clamp_plan
from pcgraph.engine.neurons import NeuronStep

if TYPE_CHECKING:
    from pcgraph.compiler.bound import Sweep
    from pcgraph.compiler.network import PCNetwork
    from pcgraph.compiler.protocol import Buffers, Program

__all__ = ["MAX_HALVINGS", "GradMode", "accept_or_halve", "eager_loop", "trace_buffer"]

GradMode = Literal["local", "autograd"]


def _autograd_state_grad(net: PCNetwork, prog: Program, x: torch.Tensor, buf: Buffers) -> None:
    prog.store(x, buf)  # the energy is taken on x: the free nodes' current states first
    with torch.enable_grad():
        x_ = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(net.energy(x_), x_)
    prog.set_state_grad(buf, g)


def eager_loop(
    net: PCNetwork,
    prog: Program,
    states: torch.Tensor,
    T: int,
    step: NeuronStep,
    record: torch.Tensor | None,
    grad_mode: GradMode,
    sweep: Sweep | None,
    backtrack: bool = False,
    tol: float | None = None,
) -> tuple[Buffers, torch.Tensor, torch.Tensor, int]:
    """The eager loop: returns the buffers, E at t = 0, the per-node energies at the last step
    and the number of steps taken (T, or fewer when ``tol`` stopped it). ``sweep``: what the
    forward sweep that initialized ``states`` returned, if one did (its work is reused).

    With ``backtrack`` (SGD neurons), a step that raised the energy is undone and retried with
    half the step size (see :func:`accept_or_halve`). A solver of several stages (Heun's
    method: an Euler predictor x̃ = x − γ g(x), then x ← x − γ/2 (g(x) + g(x̃))) gets the
    gradient at the states each stage left before the next (:class:`pcgraph.solvers.Solver`).
    With ``tol``, the loop stops after
    the first step t ≥ 1 whose energy change is at most ``tol`` times the energy before it (one
    energy and a sync per step).
    """
    with torch.no_grad():
        step.reset()
        lr0 = step.lr
        e_prev = 0.0
        buf = prog.prepare(states, sweep=sweep)
        energy_before = None
        x_free, g_free = prog.step_target(states, buf)  # the free nodes' (working) states
        # after a forward sweep the error travels back from the clamped outputs one edge per
        # step: the schedule says which errors are still exactly 0 and which σ(x) current
        swept = prog.swept(states, buf, sweep)
        # a later stage's predictor moves nodes between the schedule's steps; a solver that
        # may move a node at zero gradient would move it before the front reaches it
        front = swept and step.stages == 1 and step.solver.rests_at_zero_gradient
        quiet = clamp_plan(net, prog.clamp).quiet_schedule(swept, T) if front else None
        # plain gradient steps move only the nodes the front has reached: the others have
        # ∂E/∂x = 0 exactly, so neither their gradient is written nor their states touched
        partial = quiet is not None and step.plain and not backtrack and grad_mode == "local"
        taken = T
        for t in range(T):
            zero = quiet[t].zero if quiet is not None else frozenset()
            sent = prog.errors(states, buf, quiet[t] if quiet is not None else None)
            if backtrack and t > 0:
                sent, e_prev = accept_or_halve(prog, states, buf, step, x_free, g_free, e_prev)
            if record is not None:
                prog.node_energies(buf, out=record[t], zero=zero)
                if t == 0:
                    energy_before = record[0].sum()
            elif t == 0:  # one norm per node that carries error: the swept ones are at 0
                energy_before = prog.node_energies(buf, zero=zero).sum()
            if backtrack and t == 0:
                assert energy_before is not None
                e_prev = float(energy_before)
            if tol is not None:
                assert energy_before is not None
                if t == 0:
                    e_now = float(energy_before)
                elif record is not None:  # the trace holds this step's energies already
                    e_now = float(record[t].sum())
                else:
                    e_now = float(prog.node_energies(buf).sum())
                if t and abs(e_now - e_prev) <= tol * max(abs(e_prev), 1e-30):
                    taken = t
                    break
                e_prev = e_now
            if partial:  # fusable nodes take their whole step inside state_grad
                prog.state_grad(states, buf, sent, sgd_lr=step.lr)
                for x_part, g_part in prog.update_parts(states, buf, sgd_lr=step.lr):
                    step(x_part, g_part)
            else:
                _state_grad(net, prog, states, buf, sent, grad_mode)
                step(x_free, g_free)
            for stage in range(1, step.stages):  # the gradient at the states stage − 1 left
                sent = prog.errors(states, buf)
                _state_grad(net, prog, states, buf, sent, grad_mode)
                step(x_free, g_free, stage)
        prog.errors(
            states, buf, quiet[taken] if quiet is not None else None
        )  # at x(T), for learning
        if backtrack and T > 0:
            accept_or_halve(prog, states, buf, step, x_free, g_free, e_prev)
        prog.store(states, buf)  # x(T) into the caller's states
        step.lr = lr0
        final = prog.node_energies(buf)
        if record is not None:
            record[T] = final
        if energy_before is None:
            energy_before = final.sum()
    return buf, energy_before, final, taken


def _state_grad(
    net: PCNetwork,
    prog: Program,
    states: torch.Tensor,
    buf: Buffers,
    sent: dict[int, torch.Tensor],
    grad_mode: GradMode,
) -> None:
    if grad_mode == "local":
        prog.state_grad(states, buf, sent)
    else:
        _autograd_state_grad(net, prog, states, buf)


MAX_HALVINGS = 10


def accept_or_halve(
    prog: Program,
    states: torch.Tensor,
    buf: Buffers,
    step: NeuronStep,
    x_free: torch.Tensor,
    g_free: torch.Tensor,
    e_prev: float,
) -> tuple[dict[int, torch.Tensor], float]:
    """Keep the step just taken if it did not raise the energy; else undo it (x ← x + γ g, the
    gradient is still in its buffer), halve γ for the rest of this call and retry, at most
    :data:`MAX_HALVINGS` times. The errors at the new states are needed by the next step
    anyway; the check adds one energy per step and a sync.

    Returns:
        σ(x) of the senders at the accepted states and their energy.
    """
    sent = buf.sent_free
    energy = float(prog.node_energies(buf).sum())
    tolerance = 1e-6 * abs(e_prev) + 1e-12  # rounding, not a rise
    for _ in range(MAX_HALVINGS):
        if energy <= e_prev + tolerance:
            break
        x_free.add_(g_free, alpha=step.lr)
        step.lr /= 2.0
        x_free.add_(g_free, alpha=-step.lr)
        sent = prog.errors(states, buf)
        energy = float(prog.node_energies(buf).sum())
    return sent, energy


def trace_buffer(net: PCNetwork, states: torch.Tensor, T: int, trace: bool) -> torch.Tensor | None:
    if not trace:
        return None
    return torch.empty(T + 1, len(net.nodes), device=states.device, dtype=states.dtype)
