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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from pcgraph import fast
from pcgraph.cache import BoundedCache
from pcgraph.compiler.bound import Sweep
from pcgraph.compiler.network import PCNetwork
from pcgraph.compiler.protocol import Buffers, Program
from pcgraph.engine.loop import GradMode, eager_loop, trace_buffer
from pcgraph.engine.neurons import NeuronStep
from pcgraph.errors import ConfigError
from pcgraph.solvers import SOLVERS

__all__ = [
    "RUNNERS",
    "CompiledRunner",
    "CudaGraphRunner",
    "EagerRunner",
    "GradMode",
    "RunJob",
    "RunOptions",
    "Runner",
]

RunOutput = tuple[Buffers, torch.Tensor, torch.Tensor, torch.Tensor | None, int]


@dataclass(frozen=True)
class RunOptions:
    """How one inference call runs (see :func:`pcgraph.solve_inference` for each field)."""

    optimizer: str = "sgd"
    lr: float = 0.1
    trace: bool = False
    grad_mode: GradMode = "local"
    sweep: Sweep | None = None  # what the forward sweep that initialized the states returned
    backtrack: bool = False  # eager runner only
    tol: float | None = None  # eager runner only: stop when |ΔE| ≤ tol·|E|


@dataclass(frozen=True)
class RunJob:
    """One inference call: T steps of ``prog`` (compiled from ``net``) on ``states``, in place."""

    net: PCNetwork
    prog: Program
    states: torch.Tensor
    T: int
    opts: RunOptions

    def __iter__(self) -> Iterator[Any]:
        return iter((self.net, self.prog, self.states, self.T, self.opts))


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

    def run(self, job: RunJob) -> RunOutput:  # pragma: no cover - abstract
        raise NotImplementedError


class EagerRunner(Runner):
    """The program's step in Python, T times (the reference; every option supported)."""

    name = "eager"

    def run(self, job: RunJob) -> RunOutput:
        net, prog, states, T, opts = job
        record = trace_buffer(net, states, T, opts.trace)
        step = NeuronStep(opts.optimizer, opts.lr, states)
        buf, before, final, taken = eager_loop(
            net,
            prog,
            states,
            T,
            step,
            record,
            opts.grad_mode,
            opts.sweep,
            opts.backtrack,
            opts.tol,
        )
        if record is not None and taken < T:
            record = record[: taken + 1]
        return buf, before, final, record, taken


class CompiledRunner(Runner):
    """Each step (errors, gradient, update) as a ``torch.compile`` d function.

    Compiled once per (buffer, options) and cached; neuron solvers that declare
    ``compilable`` (sgd, euler, momentum), local gradients.
    """

    name = "compiled"

    def run(self, job: RunJob) -> RunOutput:
        net, prog, states, T, opts = job
        optimizer, lr, grad_mode = opts.optimizer, opts.lr, opts.grad_mode
        solver = SOLVERS.get(optimizer)
        if not _compilable(optimizer) or grad_mode != "local" or opts.tol is not None:
            names = [n for n in SOLVERS.names() if _compilable(n)]
            raise ConfigError(
                f"compile_step=True supports the {', '.join(names)} neuron optimizers (solvers "
                "that declare compilable) with grad_mode='local' and no tol; use the eager "
                f"runner (the default) for {optimizer!r}"
                + (" with a tolerance stop" if opts.tol is not None else "")
            )
        record = trace_buffer(net, states, T, opts.trace)
        cache = self.cache(prog)
        with torch.no_grad():
            buf = prog.prepare(states, sweep=opts.sweep)
            # the neuron optimizer is reused across minibatches (reset each time), so that the
            # compiled steps that refer to it stay valid; its state has the moved tensor's shape
            step = cache.get_or_create(
                ("step", id(solver), lr, states.data_ptr(), tuple(states.shape), id(buf)),
                lambda: NeuronStep(
                    optimizer, lr, prog.step_target(states, buf)[0], check_in_place=False
                ),
            )
            step.reset()
            energy_before = None
            for t in range(T):
                fn = self._compiled(prog, states, buf, step, record is not None or t == 0)
                energies = fn()
                if record is not None:
                    record[t] = energies
                if t == 0:
                    energy_before = energies.sum()
            prog.errors(states, buf)
            prog.store(states, buf)
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
        shape = tuple(states.shape)
        # fast.enabled(): the steps traced are the program's, bound for one value of the switch
        key = ("fn", fast.enabled(), states.data_ptr(), shape, id(buf), id(step), with_energy)

        def build() -> Callable[[], torch.Tensor]:
            x_free, g_free = prog.step_target(states, buf)

            def body() -> torch.Tensor:
                sent = prog.errors(states, buf)
                energies = prog.node_energies(buf) if with_energy else states.new_zeros(())
                prog.state_grad(states, buf, sent)
                step(x_free, g_free)
                return energies

            return torch.compile(body, dynamic=False)

        fn: Callable[[], torch.Tensor] = self.cache(prog).get_or_create(key, build)
        return fn


@dataclass
class _CapturedLoop:
    graph: torch.cuda.CUDAGraph
    outputs: RunOutput
    keep: object = None  # the program's bound steps at capture: their tensors outlive rebinding


class CudaGraphRunner(Runner):
    """The whole loop (T steps, trace included) captured once per (buffer, T, options) in a
    CUDA graph, then replayed; parameters may change in place between calls."""

    name = "cuda_graph"

    def run(self, job: RunJob) -> RunOutput:
        net, prog, states, T, opts = job
        optimizer, lr, trace, grad_mode = opts.optimizer, opts.lr, opts.trace, opts.grad_mode
        if states.device.type != "cuda":
            raise ConfigError("cuda_graph=True needs the network and states on a CUDA device")
        if grad_mode != "local" or opts.tol is not None:
            raise ConfigError(
                "cuda_graph=True supports grad_mode='local' and a fixed T only: a tolerance "
                "stop reads the energy on the host every step; use the eager runner for tol"
            )
        solver = id(SOLVERS.get(optimizer))  # not the one a name held when it was captured
        key = (states.data_ptr(), tuple(states.shape), T, solver, lr, trace, fast.enabled())
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
    ) -> _CapturedLoop:
        saved = states.clone()
        step = NeuronStep(optimizer, lr, states)
        record = trace_buffer(net, states, T, trace)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up outside the graph (lazy init, allocator)
            for _ in range(2):
                states.copy_(saved)
                eager_loop(net, prog, states, T, step, record, grad_mode, None)
        torch.cuda.current_stream().wait_stream(side)
        states.copy_(saved)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            buf, before, final, taken = eager_loop(
                net, prog, states, T, step, record, grad_mode, None
            )
            outputs = (buf, before, final, record, taken)
        return _CapturedLoop(graph, outputs, keep=prog.bound_state())


def _compilable(name: str) -> bool:
    solver = SOLVERS.get(name)
    return solver.compilable and solver.stages == 1


RUNNERS: dict[str, Runner] = {
    runner.name: runner for runner in (EagerRunner(), CompiledRunner(), CudaGraphRunner())
}
