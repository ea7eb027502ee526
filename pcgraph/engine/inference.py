"""Inference (the E-step, paper Eq. 3): move the free neurons down the energy gradient.

x_i ← x_i − γ ∂E/∂x_i for every free node, all nodes from the same snapshot (synchronous),
for T steps. Plain SGD is the reference; momentum and Adam are options.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import torch

from pcgraph.compiler.network import PCNetwork
from pcgraph.compiler.program import InferenceProgram, _Buffers, program_for
from pcgraph.errors import EnergyError, InitError

__all__ = ["InferenceResult", "NeuronOptimizer", "solve_inference"]

NeuronOptimizer = Literal["sgd", "momentum", "adam"]
GradMode = Literal["local", "autograd"]


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
    program: InferenceProgram
    buffers: _Buffers


class _NeuronStep:
    """x ← x − γ g (SGD), with momentum or Adam as options; state reset per minibatch."""

    def __init__(
        self,
        kind: str,
        lr: float,
        x: torch.Tensor,
        momentum: float = 0.9,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        if kind not in ("sgd", "momentum", "adam"):
            raise InitError(f"unknown neuron optimizer {kind!r}; valid: sgd, momentum, adam")
        if not lr > 0:
            raise InitError(f"the neuron learning rate γ must be > 0, got {lr}")
        self.kind, self.lr, self.momentum, self.betas, self.eps = kind, lr, momentum, betas, eps
        self.t = 0
        if kind != "sgd":
            self.m = torch.zeros_like(x)
        if kind == "adam":
            self.v = torch.zeros_like(x)

    def __call__(self, x: torch.Tensor, grad: torch.Tensor) -> None:
        if self.kind == "sgd":
            x.add_(grad, alpha=-self.lr)
        elif self.kind == "momentum":
            self.m.mul_(self.momentum).add_(grad)
            x.add_(self.m, alpha=-self.lr)
        else:
            self.t += 1
            b1, b2 = self.betas
            self.m.lerp_(grad, 1 - b1)
            self.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
            denom = (self.v / (1 - b2**self.t)).sqrt_().add_(self.eps)
            x.addcdiv_(self.m, denom, value=-self.lr / (1 - b1**self.t))


def _autograd_state_grad(
    net: PCNetwork, prog: InferenceProgram, x: torch.Tensor, buf: _Buffers
) -> None:
    with torch.enable_grad():
        x_ = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(net.energy(x_), x_)
    torch.mul(g, prog.free_mask, out=buf.grad)


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
    step = _NeuronStep(optimizer, lr, states)
    n = len(net.nodes)
    record = torch.empty(T + 1, n, device=states.device, dtype=states.dtype) if trace else None
    with torch.no_grad():
        buf = prog.prepare(states)
        energy_before = None
        for t in range(T):
            sent = prog.errors(states, buf)
            if record is not None:
                prog.node_energies(buf, out=record[t])
            if t == 0:
                energy_before = prog.node_energies(buf).sum()
            if grad_mode == "local":
                prog.state_grad(states, buf, sent)
            else:
                _autograd_state_grad(net, prog, states, buf)
            step(states, buf.grad)
        prog.errors(states, buf)  # errors at x(T): what learning uses
        final = prog.node_energies(buf)
        if record is not None:
            record[T] = final
        energy_after = final.sum()
        if energy_before is None:
            energy_before = energy_after
    if check_finite and not bool(torch.isfinite(energy_after)):
        bad = [net.nodes[i].name for i in range(n) if not torch.isfinite(final[i])]
        raise EnergyError(
            f"the energy became non-finite during inference at node(s) {', '.join(bad)}; lower "
            f"the neuron learning rate (γ={lr}) or the weight learning rate, or check the data "
            "for NaNs"
        )
    return InferenceResult(states, energy_before, energy_after, final, record, prog, buf)
