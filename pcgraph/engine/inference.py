"""Inference (the E-step, paper Eq. 3): move the free neurons down the energy gradient.

x_i ← x_i − γ ∂E/∂x_i for every free node, all nodes from the same snapshot (synchronous),
for T steps. Plain SGD is the reference; the update is a registered neuron solver
(:mod:`pcgraph.solvers`: momentum, Adam, Heun, or one of the user's).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from pcgraph.compiler.backends import program_for
from pcgraph.compiler.bound import Sweep
from pcgraph.compiler.network import PCNetwork
from pcgraph.compiler.protocol import Buffers, Program
from pcgraph.engine.checks import (
    GRAD_MODES,
    check_choice,
    check_growth,
    check_positive,
    check_steps,
)
from pcgraph.engine.runners import RUNNERS, GradMode, RunJob, RunOptions
from pcgraph.errors import ConfigError
from pcgraph.solvers import SOLVERS, NeuronOptimizer, get_solver, is_gradient_descent

__all__ = ["GradMode", "InferenceResult", "NeuronOptimizer", "solve_inference"]


@dataclass
class InferenceResult:
    """What :func:`solve_inference` returns.

    Attributes:
        states: the final states x(T), [B, D] (the same buffer that was passed in).
        energy_before / energy_after: total energy at t=0 and t=T (0-d tensors).
        node_energies: per-node energy at t=T, [N].
        trace: per-node energy at every step, [steps+1, N], when requested.
        steps: the inference steps taken (T, or fewer when a tolerance stopped early).
    """

    states: torch.Tensor
    energy_before: torch.Tensor
    energy_after: torch.Tensor
    node_energies: torch.Tensor
    trace: torch.Tensor | None
    program: Program
    buffers: Buffers
    steps: int = -1


def solve_inference(
    net: PCNetwork,
    states: torch.Tensor,
    clamp: str | Iterable[str] | None,
    T: int,
    *,
    optimizer: NeuronOptimizer = "sgd",
    lr: float = 0.1,
    trace: bool = False,
    grad_mode: GradMode = "local",
    check_finite: bool = True,
    divergence: float | None = 1e3,
    step_rule: str = "fixed",
    cuda_graph: bool = False,
    compile_step: bool = False,
    sweep: Sweep | None = None,
    tol: float | None = None,
) -> InferenceResult:
    """Run T inference steps on ``states`` in place.

    Args:
        net: the compiled network.
        states: [B, D] flat states with clamped nodes already holding their data and free nodes
            their initial values.
        clamp: the clamp set (task name or node names); clamped nodes never move.
        T: number of inference steps (0 only evaluates the energy).
        optimizer: the neuron solver, a name in :data:`pcgraph.solvers.SOLVERS`: ``sgd``
            (the reference), ``momentum``, ``adam``, the ODE solvers of dx/dt = −∂E/∂x with
            step γ ``euler`` (the same update as sgd) and ``heun`` (second order: two gradient
            evaluations per step), or one registered with :func:`pcgraph.register_solver`.
        lr: the neuron learning rate γ.
        trace: also return the per-node energy at every step, [T+1, N].
        grad_mode: ``local`` (closed-form messages; autograd per edge only for ops without them)
            or ``autograd`` (the gradient of the whole energy; the reference).
        check_finite: raise :class:`EnergyError` if the final energy is not finite or grew
            more than ``divergence`` times over the T steps (the node that grew most is named).
        divergence: the growth E(T) / E(0) taken as divergence (gradient descent with a stable
            γ never increases the energy); None checks finiteness only.
        step_rule: ``fixed`` (γ every step, the paper's) or ``backtrack``: a step that raised
            the energy is undone and retried with half the step, up to 10 times, so that the
            energy never increases whatever γ (SGD neurons, eager runner; costs one energy and a
            device sync per step). Makes long inference (T ≫ the T it was tuned at) stable.
        cuda_graph: on CUDA, capture the whole loop (T steps, trace included) in a CUDA graph
            on first use and replay it afterwards, so that small batches are not dominated by
            kernel launches. The graph is reused while ``states`` (the same buffer), T and the
            options stay the same; parameters may change in place between calls.
        compile_step: run each step (errors, gradient, update) as a ``torch.compile``d function
            (solvers that declare ``compilable``: sgd, euler, momentum). Opt-in: compiling
            takes seconds to tens of seconds, and on the CPU it was measured slower than eager
            (docs/performance.md); it is meant for accelerators where fusing the element-wise
            work pays.
        tol: stop early, after the first step whose energy change |E(t) − E(t−1)| is at most
            ``tol`` · |E(t−1)| (eager runner; costs one energy and a sync per step). None runs
            all T steps.
        sweep: what the forward sweep that initialized ``states`` returned
            (``Initializer.init`` returns it): its fixed predictions and swept states are
            reused, and the errors it left at 0 are not computed again, while it holds. Only
            for callers that know nothing changed the weights or the states in between
            (``PCLearner`` does: init, then inference); a check of the tensors' versions
            guards it against in-place torch writes, not against writes that bump no version
            (``.data``, NumPy) (see :class:`pcgraph.compiler.bound.Sweep`).

    Returns:
        an :class:`InferenceResult`; its buffers hold the errors at x(T), ready for learning.
    """
    check_steps(T)
    optimizer, solver = get_solver(optimizer, what="neuron optimizer")
    check_choice(grad_mode, "grad_mode", GRAD_MODES)
    check_positive(lr, "the neuron learning rate γ (lr)")
    if divergence is not None:
        check_positive(divergence, "divergence")
    if not isinstance(states, torch.Tensor):
        raise ConfigError(
            f"states must be a tensor (net.new_states(B)), got {type(states).__name__}"
        )
    if states.dim() != 2 or states.shape[1] != net.state_size or states.shape[0] == 0:
        raise ConfigError(
            f"states must be a [B, {net.state_size}] flat buffer (net.new_states) with B ≥ 1, "
            f"got shape {list(states.shape)}"
        )
    if states.dtype != net.dtype or states.device != net.device:
        raise ConfigError(
            f"states are {states.dtype} on {states.device} but the network is {net.dtype} on "
            f"{net.device}; make them with net.new_states(B)"
        )
    if tol is not None:
        check_positive(tol, "tol (the relative energy change that stops inference)")
    check_choice(step_rule, "step_rule", ("fixed", "backtrack"))
    backtrack = step_rule == "backtrack"
    if backtrack and (not is_gradient_descent(solver) or cuda_graph or compile_step):
        plain = [n for n in SOLVERS.names() if is_gradient_descent(SOLVERS.get(n))]
        raise ConfigError(
            "step_rule='backtrack' needs the sgd neuron optimizer (plain gradient steps: "
            f"{', '.join(plain)}) and the eager runner (not cuda_graph or compile_step); got "
            f"{optimizer!r}"
        )
    prog = program_for(net, net.resolve_clamp(clamp))
    runner = RUNNERS["cuda_graph" if cuda_graph else "compiled" if compile_step else "eager"]
    opts = RunOptions(
        optimizer=optimizer,
        lr=lr,
        trace=trace,
        grad_mode=grad_mode,
        sweep=None if cuda_graph else sweep,
        backtrack=backtrack,
        tol=tol,
    )
    buf, energy_before, final, record, taken = runner.run(RunJob(net, prog, states, T, opts))
    energy_after = final.sum()
    if check_finite:  # one comparison of two numbers already computed: free
        initial = None if record is None else record[0]
        check_growth(
            net,
            energy_before,
            final,
            initial,
            T=T,
            lr=lr,
            bound=divergence,
            states=states,
            clamp=prog.clamp,
            after=energy_after,
        )
    return InferenceResult(states, energy_before, energy_after, final, record, prog, buf, taken)
