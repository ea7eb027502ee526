"""Runners: the ways one inference loop is executed, each owning its own caches.

- :class:`EagerRunner` — the reference: the program's step in Python, T times;
- :class:`CompiledRunner` — each step (errors, gradient, update) through ``torch.compile``;
- :class:`CudaGraphRunner` — the whole loop captured once in a CUDA graph and replayed.

All return the same thing — the buffers (errors at x(T), ready for learning), E at t = 0 and the
per-node energies at t = T — and compute the same numbers (tested equal). A runner's caches
(compiled steps, CUDA graphs, neuron optimizers) are :class:`pcgraph.cache.BoundedCache` s held
per program in a weak mapping, so they go when the program goes and never grow without bound.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch

from pcgraph.cache import BoundedCache
from pcgraph.compiler.network import PCNetwork
from pcgraph.compiler.plan import clamp_plan
from pcgraph.compiler.protocol import Buffers, Program
from pcgraph.engine.neurons import TWO_STAGE, NeuronStep
from pcgraph.errors import ConfigError

__all__ = [
    "RUNNERS",
    "CompiledRunner",
    "CudaGraphRunner",
    "EagerRunner",
    "GradMode",
    "RunOptions",
    "Runner",
]

GradMode = Literal["local", "autograd"]
RunOutput = tuple[Buffers, torch.Tensor, torch.Tensor, torch.Tensor | None, int]


@dataclass(frozen=True)
class RunOptions:
    """How one inference call runs (see :func:`pcgraph.solve_inference` for each field)."""

    optimizer: str = "sgd"
    lr: float = 0.1
    trace: bool = False
    grad_mode: GradMode = "local"
    reuse_consts: bool = False
    backtrack: bool = False  # eager runner only
    tol: float | None = None  # eager runner only: stop when |ΔE| ≤ tol·|E|


class Runner:
    """Runs T inference steps on ``states`` in place (see the module docstring)."""

    name = "base"

    def __init__(self, cache_size: int = 4) -> None:
        self._caches: weakref.WeakKeyDictionary[Any, BoundedCache[Any, Any]] = (
            weakref.WeakKeyDictionary()
        )
        self.cache_size = cache_size

    def cache(self, prog: Program) -> BoundedCache[Any, Any]:
        """This runner's cache for ``prog`` (a few shapes: training, evaluation, a last batch)."""
        found = self._caches.get(prog)
        if found is None:
            found = BoundedCache(self.cache_size)
            self._caches[prog] = found
        return found

    def run(
        self,
        net: PCNetwork,
        prog: Program,
        states: torch.Tensor,
        T: int,
        opts: RunOptions,
    ) -> RunOutput:  # pragma: no cover - abstract
        raise NotImplementedError


def _autograd_state_grad(net: PCNetwork, prog: Program, x: torch.Tensor, buf: Buffers) -> None:
    with torch.enable_grad():
        x_ = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(net.energy(x_), x_)
    torch.mul(g, prog.free_mask, out=buf.grad)


def _loop(
    net: PCNetwork,
    prog: Program,
    states: torch.Tensor,
    T: int,
    step: NeuronStep,
    record: torch.Tensor | None,
    grad_mode: GradMode,
    reuse_consts: bool,
    backtrack: bool = False,
    tol: float | None = None,
) -> tuple[Buffers, torch.Tensor, torch.Tensor, int]:
    """The eager loop: returns the buffers, E at t = 0, the per-node energies at the last step
    and the number of steps taken (T, or fewer when ``tol`` stopped it).

    With ``backtrack`` (SGD neurons), a step that raised the energy is undone and retried with
    half the step size (see :func:`_accept`). With Heun neurons each step is Heun's method for
    dx/dt = −∂E/∂x: an Euler predictor x̃ = x − γ g(x), then x ← x − γ/2 (g(x) + g(x̃)) (two
    gradient evaluations). With ``tol``, the loop stops after the first step t ≥ 1 whose
    energy change is at most ``tol`` times the energy before it (one energy and a sync per step).
    """
    with torch.no_grad():
        step.reset()
        lr0 = step.lr
        e_prev = 0.0
        buf = prog.prepare(states, reuse_consts=reuse_consts)
        energy_before = None
        span = prog.free_range  # update only the free columns when they are one range
        x_free, g_free = (
            (states, buf.grad)
            if span is None
            else (states[:, span[0] : span[1]], buf.grad[:, span[0] : span[1]])
        )
        # after a forward sweep the error travels back from the clamped outputs one edge per
        # step: the schedule says which errors are still exactly 0 and which σ(x) current
        swept = prog.swept_since_prepare(states, buf)
        heun = step.kind in TWO_STAGE
        front = swept and not heun  # Heun's predictor moves nodes between the schedule's steps
        quiet = clamp_plan(net, prog.clamp).quiet_schedule(swept, T) if front else None
        g_first = torch.empty_like(g_free) if heun else None
        taken = T
        for t in range(T):
            zero = quiet[t].zero if quiet is not None else frozenset()
            fresh = quiet[t].fresh if quiet is not None else None
            sent = prog.errors(states, buf, skip=zero, fresh=fresh)
            if backtrack and t > 0:
                sent, e_prev = _accept(prog, states, buf, step, x_free, g_free, e_prev)
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
            _state_grad(net, prog, states, buf, sent, grad_mode)
            step(x_free, g_free)
            if g_first is not None:  # Heun's corrector: x ← x̃ + γ/2 (g(x) − g(x̃))
                g_first.copy_(g_free)
                sent = prog.errors(states, buf)
                _state_grad(net, prog, states, buf, sent, grad_mode)
                x_free.add_(g_first, alpha=step.lr / 2).add_(g_free, alpha=-step.lr / 2)
        if quiet is not None:  # at x(T): for learning
            prog.errors(states, buf, skip=quiet[taken].zero, fresh=quiet[taken].fresh)
        else:
            prog.errors(states, buf)
        if backtrack and T > 0:
            _accept(prog, states, buf, step, x_free, g_free, e_prev)
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


def _accept(
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


def _record(net: PCNetwork, states: torch.Tensor, T: int, trace: bool) -> torch.Tensor | None:
    if not trace:
        return None
    return torch.empty(T + 1, len(net.nodes), device=states.device, dtype=states.dtype)


class EagerRunner(Runner):
    """The program's step in Python, T times (the reference; every option supported)."""

    name = "eager"

    def run(
        self,
        net: PCNetwork,
        prog: Program,
        states: torch.Tensor,
        T: int,
        opts: RunOptions,
    ) -> RunOutput:
        record = _record(net, states, T, opts.trace)
        step = NeuronStep(opts.optimizer, opts.lr, states)
        buf, before, final, taken = _loop(
            net,
            prog,
            states,
            T,
            step,
            record,
            opts.grad_mode,
            opts.reuse_consts,
            opts.backtrack,
            opts.tol,
        )
        if record is not None and taken < T:
            record = record[: taken + 1]
        return buf, before, final, record, taken


class CompiledRunner(Runner):
    """Each step (errors, gradient, update) as a ``torch.compile`` d function.

    Compiled once per (buffer, options) and cached; sgd/momentum neurons, local gradients.
    """

    name = "compiled"

    def run(
        self,
        net: PCNetwork,
        prog: Program,
        states: torch.Tensor,
        T: int,
        opts: RunOptions,
    ) -> RunOutput:
        optimizer, lr, grad_mode = opts.optimizer, opts.lr, opts.grad_mode
        if optimizer in ("adam", "heun") or grad_mode != "local" or opts.tol is not None:
            raise ConfigError(
                "compile_step=True supports the sgd, euler and momentum neuron optimizers "
                "with grad_mode='local' and no tol; use the eager runner (the default) for "
                f"{optimizer!r}" + (" with a tolerance stop" if opts.tol is not None else "")
            )
        record = _record(net, states, T, opts.trace)
        cache = self.cache(prog)
        # the neuron optimizer is reused across minibatches (reset each time), so that the
        # compiled steps that refer to it stay valid
        step = cache.get_or_create(
            ("step", optimizer, lr, states.data_ptr(), tuple(states.shape)),
            lambda: NeuronStep(optimizer, lr, states),
        )
        with torch.no_grad():
            step.reset()
            buf = prog.prepare(states, reuse_consts=opts.reuse_consts)
            energy_before = None
            for t in range(T):
                fn = self._compiled(prog, states, buf, step, record is not None or t == 0)
                energies = fn()
                if record is not None:
                    record[t] = energies
                if t == 0:
                    energy_before = energies.sum()
            prog.errors(states, buf)
            final = prog.node_energies(buf)
            if record is not None:
                record[T] = final
        before = final.sum() if energy_before is None else energy_before
        return buf, before, final, record, T

    def _compiled(
        self,
        prog: Program,
        states: torch.Tensor,
        buf: Buffers,
        step: NeuronStep,
        with_energy: bool,
    ) -> Callable[[], torch.Tensor]:
        key = ("fn", states.data_ptr(), tuple(states.shape), id(buf), id(step), with_energy)

        def build() -> Callable[[], torch.Tensor]:
            def body() -> torch.Tensor:
                sent = prog.errors(states, buf)
                energies = prog.node_energies(buf) if with_energy else states.new_zeros(())
                prog.state_grad(states, buf, sent)
                step(states, buf.grad)
                return energies

            return torch.compile(body, dynamic=False)

        fn: Callable[[], torch.Tensor] = self.cache(prog).get_or_create(key, build)
        return fn


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    outputs: RunOutput


class CudaGraphRunner(Runner):
    """The whole loop (T steps, trace included) captured once per (buffer, T, options) in a
    CUDA graph, then replayed; parameters may change in place between calls."""

    name = "cuda_graph"

    def run(
        self,
        net: PCNetwork,
        prog: Program,
        states: torch.Tensor,
        T: int,
        opts: RunOptions,
    ) -> RunOutput:
        optimizer, lr, trace, grad_mode = opts.optimizer, opts.lr, opts.trace, opts.grad_mode
        if states.device.type != "cuda":
            raise ConfigError("cuda_graph=True needs the network and states on a CUDA device")
        if grad_mode != "local" or opts.tol is not None:
            raise ConfigError(
                "cuda_graph=True supports grad_mode='local' and a fixed T only: a tolerance "
                "stop reads the energy on the host every step; use the eager runner for tol"
            )
        key = (states.data_ptr(), tuple(states.shape), T, optimizer, lr, trace)
        cached = self.cache(prog).get_or_create(
            key, lambda: self._capture(net, prog, states, T, optimizer, lr, trace, grad_mode)
        )
        cached.graph.replay()
        # the captured tensors are overwritten by the next replay: hand out copies of the metrics
        buf, energy_before, final, record, taken = cached.outputs
        return (
            buf,
            energy_before.clone(),
            final.clone(),
            None if record is None else record.clone(),
            taken,
        )

    @staticmethod
    def _capture(
        net: PCNetwork,
        prog: Program,
        states: torch.Tensor,
        T: int,
        optimizer: str,
        lr: float,
        trace: bool,
        grad_mode: GradMode,
    ) -> _Graph:
        saved = states.clone()
        step = NeuronStep(optimizer, lr, states)
        record = _record(net, states, T, trace)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up outside the graph (lazy init, allocator)
            for _ in range(2):
                states.copy_(saved)
                _loop(net, prog, states, T, step, record, grad_mode, False)
        torch.cuda.current_stream().wait_stream(side)
        states.copy_(saved)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            buf, before, final, taken = _loop(net, prog, states, T, step, record, grad_mode, False)
            outputs = (buf, before, final, record, taken)
        return _Graph(graph, outputs)


RUNNERS: dict[str, Runner] = {
    runner.name: runner for runner in (EagerRunner(), CompiledRunner(), CudaGraphRunner())
}
