"""Inference (the E-step, paper Eq. 3): move the free neurons down the energy gradient.

x_i ← x_i − γ ∂E/∂x_i for every free node, all nodes from the same snapshot (synchronous),
for T steps. Plain SGD is the reference; momentum and Adam are options.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from pcgraph.compiler.backends import program_for
from pcgraph.compiler.network import PCNetwork
from pcgraph.compiler.protocol import Buffers, Program
from pcgraph.engine.neurons import NeuronOptimizer
from pcgraph.engine.runners import RUNNERS, GradMode
from pcgraph.errors import EnergyError, InitError

__all__ = ["GradMode", "InferenceResult", "NeuronOptimizer", "solve_inference"]


@dataclass
class InferenceResult:
    """What :func:`solve_inference` returns.

    Attributes:
        states: the final states x(T), [B, D] (the same buffer that was passed in).
        energy_before / energy_after: total energy at t=0 and t=T (0-d tensors).
        node_energies: per-node energy at t=T, [N].
        trace: per-node energy at every step, [T+1, N], when requested.
    """

    states: torch.Tensor
    energy_before: torch.Tensor
    energy_after: torch.Tensor
    node_energies: torch.Tensor
    trace: torch.Tensor | None
    program: Program
    buffers: Buffers


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
    cuda_graph: bool = False,
    compile_step: bool = False,
    reuse_consts: bool = False,
) -> InferenceResult:
    """Run T inference steps on ``states`` in place.

    Args:
        net: the compiled network.
        states: [B, D] flat states with clamped nodes already holding their data and free nodes
            their initial values.
        clamp: the clamp set (task name or node names); clamped nodes never move.
        T: number of inference steps (0 only evaluates the energy).
        optimizer: ``sgd`` (reference), ``momentum`` or ``adam`` for the neurons.
        lr: the neuron learning rate γ.
        trace: also return the per-node energy at every step, [T+1, N].
        grad_mode: ``local`` (closed-form messages; autograd per edge only for ops without them)
            or ``autograd`` (the gradient of the whole energy; the reference).
        check_finite: raise :class:`EnergyError` if the final energy is not finite.
        cuda_graph: on CUDA, capture the whole loop (T steps, trace included) in a CUDA graph
            on first use and replay it afterwards, so that small batches are not dominated by
            kernel launches. The graph is reused while ``states`` (the same buffer), T and the
            options stay the same; parameters may change in place between calls.
        compile_step: run each step (errors, gradient, update) as a ``torch.compile``d function
            (sgd/momentum neurons). Opt-in: compiling takes seconds to tens of seconds, and on
            the CPU it was measured slower than eager (docs/performance.md); it is meant for
            accelerators where fusing the element-wise work pays.
        reuse_consts: reuse the fixed predictions a forward sweep of the program just computed
            on this buffer. Only for callers that know nothing changed the weights in between
            (``PCLearner.infer`` does: init, then inference); a token check on the buffer and
            parameter versions guards it as well.

    Returns:
        an :class:`InferenceResult`; its buffers hold the errors at x(T), ready for learning.
    """
    if T < 0:
        raise InitError(f"T must be ≥ 0, got {T}")
    if states.dim() != 2 or states.shape[1] != net.state_size:
        raise InitError(
            f"states must be a [B, {net.state_size}] flat buffer (net.new_states), "
            f"got shape {list(states.shape)}"
        )
    prog = program_for(net, net.resolve_clamp(clamp))
    runner = RUNNERS["cuda_graph" if cuda_graph else "compiled" if compile_step else "eager"]
    buf, energy_before, final, record = runner.run(
        net,
        prog,
        states,
        T,
        optimizer=optimizer,
        lr=lr,
        trace=trace,
        grad_mode=grad_mode,
        reuse_consts=reuse_consts and not cuda_graph,
    )
    n = len(net.nodes)
    energy_after = final.sum()
    if check_finite and not bool(torch.isfinite(energy_after)):
        bad = [net.nodes[i].name for i in range(n) if not torch.isfinite(final[i])]
        raise EnergyError(
            f"the energy became non-finite during inference at node(s) {', '.join(bad)}; lower "
            f"the neuron learning rate (γ={lr}) or the weight learning rate, or check the data "
            "for NaNs"
        )
    return InferenceResult(states, energy_before, energy_after, final, record, prog, buf)
