"""Inference (the E-step, paper Eq. 3): move the free neurons down the energy gradient.

x_i ← x_i − γ ∂E/∂x_i for every free node, all nodes from the same snapshot (synchronous),
for T steps. Plain SGD is the reference; momentum and Adam are options.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
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
        self.m: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        if kind != "sgd":
            self.m = torch.zeros_like(x)
        if kind == "adam":
            self.v = torch.zeros_like(x)

    def reset(self) -> None:
        """Start a new minibatch (zero the optimizer state, in place)."""
        self.t = 0
        if self.m is not None:
            self.m.zero_()
        if self.v is not None:
            self.v.zero_()

    def __call__(self, x: torch.Tensor, grad: torch.Tensor) -> None:
        if self.kind == "sgd":
            x.add_(grad, alpha=-self.lr)
            return
        if self.m is not None and self.m.shape != x.shape:  # stepping a column range of x
            self.m = torch.zeros_like(x)
            self.v = torch.zeros_like(x) if self.v is not None else None
        m = self.m
        assert m is not None
        if self.kind == "momentum":
            m.mul_(self.momentum).add_(grad)
            x.add_(m, alpha=-self.lr)
            return
        v = self.v
        assert v is not None
        self.t += 1
        b1, b2 = self.betas
        m.lerp_(grad, 1 - b1)
        v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        denom = (v / (1 - b2**self.t)).sqrt_().add_(self.eps)
        x.addcdiv_(m, denom, value=-self.lr / (1 - b1**self.t))


def _autograd_state_grad(
    net: PCNetwork, prog: InferenceProgram, x: torch.Tensor, buf: _Buffers
) -> None:
    with torch.enable_grad():
        x_ = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(net.energy(x_), x_)
    torch.mul(g, prog.free_mask, out=buf.grad)


def _run(
    net: PCNetwork,
    prog: InferenceProgram,
    states: torch.Tensor,
    T: int,
    step: _NeuronStep,
    record: torch.Tensor | None,
    grad_mode: GradMode,
    compiled: bool = False,
    reuse_consts: bool = False,
) -> tuple[_Buffers, torch.Tensor, torch.Tensor]:
    """The inference loop: returns the buffers, E at t=0 and the per-node energies at t=T."""
    with torch.no_grad():
        step.reset()
        buf = prog.prepare(states, reuse_consts=reuse_consts)
        energy_before = None
        if compiled:
            return _run_compiled(prog, states, T, step, record, buf)
        span = prog.free_range  # update only the free columns when they are one range
        x_free, g_free = (
            (states, buf.grad)
            if span is None
            else (states[:, span[0] : span[1]], buf.grad[:, span[0] : span[1]])
        )
        # after a forward sweep on this buffer, its nodes start at ε = 0 with σ(x) known
        skip = prog.swept_since_prepare(states, buf)
        for t in range(T):
            sent = prog.errors(states, buf, skip=skip if t == 0 else frozenset())
            if record is not None:
                prog.node_energies(buf, out=record[t])
                if t == 0:
                    energy_before = record[0].sum()
            elif t == 0:
                energy_before = prog.node_energies(buf).sum()
            if grad_mode == "local":
                prog.state_grad(states, buf, sent)
            else:
                _autograd_state_grad(net, prog, states, buf)
            step(x_free, g_free)
        prog.errors(states, buf, skip=skip if T == 0 else frozenset())  # at x(T): for learning
        final = prog.node_energies(buf)
        if record is not None:
            record[T] = final
        if energy_before is None:
            energy_before = final.sum()
    return buf, energy_before, final


def _run_compiled(
    prog: InferenceProgram,
    states: torch.Tensor,
    T: int,
    step: _NeuronStep,
    record: torch.Tensor | None,
    buf: _Buffers,
) -> tuple[_Buffers, torch.Tensor, torch.Tensor]:
    """The loop with each step (errors, gradient, update) compiled by ``torch.compile``."""
    energy_before = None
    for t in range(T):
        energies = _compiled_step(prog, states, buf, step, record is not None or t == 0)()
        if record is not None:
            record[t] = energies
        if t == 0:
            energy_before = energies.sum()
    prog.errors(states, buf)
    final = prog.node_energies(buf)
    if record is not None:
        record[T] = final
    return buf, final.sum() if energy_before is None else energy_before, final


def _compiled_step(
    prog: InferenceProgram,
    states: torch.Tensor,
    buf: _Buffers,
    step: _NeuronStep,
    with_energy: bool,
) -> Callable[[], torch.Tensor]:
    """One inference step as a ``torch.compile``d function, cached per buffers and options."""
    key = (states.data_ptr(), tuple(states.shape), id(buf), id(step), with_energy)
    cache: dict[tuple[object, ...], Callable[[], torch.Tensor]] = prog.__dict__.setdefault(
        "_compiled_steps", {}
    )
    fn = cache.get(key)
    if fn is None:

        def body() -> torch.Tensor:
            sent = prog.errors(states, buf)
            energies = prog.node_energies(buf) if with_energy else states.new_zeros(())
            prog.state_grad(states, buf, sent)
            step(states, buf.grad)
            return energies

        fn = torch.compile(body, dynamic=False)
        cache[key] = fn
    return fn


def _neuron_step_for(
    prog: InferenceProgram, kind: str, lr: float, states: torch.Tensor
) -> _NeuronStep:
    """A neuron optimizer reused across minibatches (reset each time), so that compiled steps
    that refer to it stay valid."""
    key = (kind, lr, states.data_ptr(), tuple(states.shape))
    steps: dict[tuple[object, ...], _NeuronStep] = prog.__dict__.setdefault("_steps", {})
    if key not in steps:
        steps[key] = _NeuronStep(kind, lr, states)
    return steps[key]


@dataclass
class _Graph:
    key: tuple[object, ...]
    graph: torch.cuda.CUDAGraph
    outputs: tuple[_Buffers, torch.Tensor, torch.Tensor, torch.Tensor | None]


def _graphed(
    net: PCNetwork,
    prog: InferenceProgram,
    states: torch.Tensor,
    T: int,
    optimizer: str,
    lr: float,
    trace: bool,
    grad_mode: GradMode,
) -> tuple[_Buffers, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Capture the loop once per (buffer, T, options) in a CUDA graph, then replay it."""
    if states.device.type != "cuda":
        raise InitError("cuda_graph=True needs the network and states on a CUDA device")
    if grad_mode != "local":
        raise InitError("cuda_graph=True supports grad_mode='local' only")
    key = (states.data_ptr(), tuple(states.shape), T, optimizer, lr, trace)
    graphs: dict[tuple[object, ...], _Graph] = prog.__dict__.setdefault("_cuda_graphs", {})
    cached = graphs.pop(key, None)  # re-inserted last: evict least recently used
    if cached is None:
        saved = states.clone()
        step = _NeuronStep(optimizer, lr, states)
        n = len(net.nodes)
        record = torch.empty(T + 1, n, device=states.device, dtype=states.dtype) if trace else None
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up outside the graph (lazy init, allocator)
            for _ in range(2):
                states.copy_(saved)
                _run(net, prog, states, T, step, record, grad_mode, reuse_consts=False)
        torch.cuda.current_stream().wait_stream(side)
        states.copy_(saved)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = (
                *_run(net, prog, states, T, step, record, grad_mode, reuse_consts=False),
                record,
            )
        cached = _Graph(key, graph, outputs)
        if len(graphs) >= 4:  # a few shapes (training, evaluation, a last partial batch)
            graphs.pop(next(iter(graphs)))
    graphs[key] = cached
    cached.graph.replay()
    # the captured tensors are overwritten by the next replay: hand out copies of the metrics
    buf, energy_before, final, record = cached.outputs
    return buf, energy_before.clone(), final.clone(), None if record is None else record.clone()


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
    n = len(net.nodes)
    if cuda_graph:
        buf, energy_before, final, record = _graphed(
            net, prog, states, T, optimizer, lr, trace, grad_mode
        )
    else:
        if compile_step and (optimizer == "adam" or grad_mode != "local"):
            raise InitError(
                "compile_step=True supports the sgd and momentum neuron optimizers "
                "with grad_mode='local'"
            )
        step = (
            _neuron_step_for(prog, optimizer, lr, states)
            if compile_step
            else _NeuronStep(optimizer, lr, states)
        )
        record = torch.empty(T + 1, n, device=states.device, dtype=states.dtype) if trace else None
        buf, energy_before, final = _run(
            net, prog, states, T, step, record, grad_mode, compile_step, reuse_consts
        )
    energy_after = final.sum()
    if check_finite and not bool(torch.isfinite(energy_after)):
        bad = [net.nodes[i].name for i in range(n) if not torch.isfinite(final[i])]
        raise EnergyError(
            f"the energy became non-finite during inference at node(s) {', '.join(bad)}; lower "
            f"the neuron learning rate (γ={lr}) or the weight learning rate, or check the data "
            "for NaNs"
        )
    return InferenceResult(states, energy_before, energy_after, final, record, prog, buf)
