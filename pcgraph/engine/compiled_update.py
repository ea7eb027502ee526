"""One whole weight update of a :class:`~pcgraph.engine.learning.PCLearner` as
``torch.compile``d code (:class:`CompiledUpdate`): the clamp, the forward sweep, T inference
steps, the errors at x(T), the weight gradients, and the optimizer step.

The learner's program is bound once, eagerly, to the learner's state buffer of one batch size
(:meth:`ProgramBase.bind <pcgraph.compiler.program_base.ProgramBase.bind>`); the traced body
then calls only the bound steps and the program's step methods, the same code the eager
update runs, with pcgraph's native activations as ``torch.library`` custom ops inside the
graph (:mod:`pcgraph.ops.native_ops`). The optimizer's step is compiled on its own (torch
breaks the graph at an optimizer step taken inside a larger function). The eager update is
the reference it must equal (``tests/test_compile.py``); ``benchmarks/bench_compile_step.py``
times it. Opt-in: it compiles for tens of seconds, and on a CPU it was not measured faster.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import torch

from pcgraph.compiler.backends import program_for
from pcgraph.compiler.program import InferenceProgram
from pcgraph.engine.neurons import NeuronStep
from pcgraph.errors import ConfigError
from pcgraph.solvers import SOLVERS

if TYPE_CHECKING:
    from pcgraph.engine.learning import PCLearner

__all__ = ["CompiledUpdate"]


def _refuse(learner: PCLearner) -> str | None:
    """Why ``learner`` has no compiled whole update (None: it has one)."""
    solver = SOLVERS.get(learner.neuron_optimizer)
    if learner.initializer.name != "forward":
        return f"init 'forward' (got {learner.initializer.name!r})"
    if learner.algorithm != "pc" or learner.schedule != "standard":
        return f"the standard PC update (got {learner.algorithm!r}, {learner.schedule!r})"
    if not (solver.compilable and solver.stages == 1):
        return f"a compilable one-stage neuron solver (got {learner.neuron_optimizer!r})"
    if learner.grad_mode != "local" or learner.tol is not None or learner.step_rule != "fixed":
        return "grad_mode='local', no tol and the fixed step rule"
    if learner.net.per_batch or learner.net.backend != "dense" or learner.dist is not None:
        return "a dense network without dropout, on one process"
    return None


class CompiledUpdate:
    """``update(data)``: one whole weight update of ``learner`` through ``torch.compile``,
    for batches of ``example``'s shapes; returns the energy at x(T) (a tensor).

    The weights, the optimizer's state and the learner's counters (``steps``) change as
    :meth:`PCLearner.train_step <pcgraph.engine.learning.PCLearner.train_step>` changes them.

    Args:
        learner: a forward-initialized, standard-schedule learner on a dense network with a
            compilable one-stage neuron solver (sgd, euler, momentum).
        example: one batch (its shapes fix the compiled graph's).
        compile_optimizer: compile the optimizer's step too (else it runs eagerly).

    Raises:
        ConfigError: a learner it cannot compile, naming what it needs; later, a batch of
            other shapes than ``example``.
    """

    def __init__(
        self,
        learner: PCLearner,
        example: Mapping[str, torch.Tensor],
        *,
        compile_optimizer: bool = True,
    ) -> None:
        reason = _refuse(learner)
        if reason is not None:
            raise ConfigError(f"CompiledUpdate needs {reason}; use PCLearner.train_step")
        self.learner = learner
        net, clamp = learner.net, learner.clamp
        self.shapes = {name: tuple(value.shape) for name, value in example.items()}
        x = learner.prepare_states(example, clamp)
        self.x = x
        self._views = [x[:, net.node(name).cols] for name in self.shapes]
        ctx = learner.context(clamp, train=True)
        order = ctx.plan.forward_order()
        prog = program_for(net, clamp)
        assert isinstance(prog, InferenceProgram)  # the dense backend's (checked above)
        with torch.no_grad():
            learner.initializer.init(x, ctx)  # binds the program to x and its buffers
        self.prog, self.buf = prog, prog.buffers(x.shape[0])
        self._sweep = prog.sweep_steps(x, order)  # fixed parts, x_i = μ_i, the write into x
        self._store = prog.bound.store  # x(T) into x, bound to x (prog.store checks that)
        x_free, g_free = prog.step_target(x, self.buf)
        self._moved = (x_free, g_free)
        self._step = NeuronStep(
            learner.neuron_optimizer, learner.lr_neurons, x_free, check_in_place=False
        )
        self._body: Callable[..., tuple[torch.Tensor, torch.Tensor]] = torch.compile(
            self._update, dynamic=False
        )
        opt_step = learner.optimizer.step
        self._opt_step = torch.compile(opt_step) if compile_optimizer else opt_step

    def _update(self, *data: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The traced body: clamp, sweep, T steps, errors at x(T), weight gradients."""
        prog, buf, x = self.prog, self.buf, self.x
        with torch.no_grad():
            for view, value in zip(self._views, data, strict=True):
                view.copy_(value.reshape(view.shape))
            for step in self._sweep:
                step()
            self._step.reset()
            before = None
            for _ in range(self.learner.T):
                sent = prog.errors(x, buf)
                if before is None:
                    before = prog.node_energies(buf).sum()
                prog.state_grad(x, buf, sent)
                self._step(*self._moved)
            prog.errors(x, buf)
            # two graphs: in one, AOTAutograd's replay of the outputs that alias the state
            # buffer fails from the second call on (torch 2.13: "incorrect out shape after
            # application of ViewMeta sequence")
            torch._dynamo.graph_break()
            if self._store is not None:
                self._store()
            after = prog.node_energies(buf).sum()
        prog.param_grads(x, buf, accumulate=False)
        return (after if before is None else before), after

    def __call__(self, data: Mapping[str, torch.Tensor]) -> torch.Tensor:
        shapes = {name: tuple(value.shape) for name, value in data.items()}
        if shapes != self.shapes:
            raise ConfigError(
                f"CompiledUpdate was built for batches of shapes {self.shapes}, got {shapes}; "
                "build one per batch shape (e.g. drop the last partial batch)"
            )
        _, after = self._body(*(data[name] for name in self.shapes))
        self._opt_step()
        self.learner.steps += 1
        return after
