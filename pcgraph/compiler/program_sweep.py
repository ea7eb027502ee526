"""The forward sweep of a bound inference program: x_i = μ_i in topological order, as steps
bound to the program's views (:class:`ForwardSweep`), and what it leaves at ε = 0."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch

from pcgraph.compiler.bound import Sweep, SweepPlan
from pcgraph.compiler.program_base import ProgramBase
from pcgraph.compiler.protocol import Buffers
from pcgraph.compiler.steps import (
    Step,
    copy_all,
    forward_step,
    write_back,
)

__all__ = ["ForwardSweep"]


class ForwardSweep(ProgramBase):
    """Forward initialization on the program's buffers (a part of :class:`InferenceProgram`)."""

    def _token(self, x: torch.Tensor, buf: Buffers) -> tuple[object, ...]:
        """Identifies x's contents and the weights: in-place writes bump ``_version``."""
        return (x.data_ptr(), x._version, id(buf), tuple(p._version for p in self._params))

    def _holds(self, sweep: Sweep, x: torch.Tensor, buf: Buffers, key: tuple[object, ...]) -> bool:
        """Whether ``sweep`` still describes x and the weights (see :class:`Sweep`): the
        program is bound to the same operands as then (``key``: their binding key now), and no
        version moved since."""
        return (
            sweep.bound is self._bound
            and sweep.token == self._token(x, buf)
            and sweep.bound.key == key
        )

    @torch.no_grad()
    def forward_sweep(self, x: torch.Tensor, order: list[int]) -> Sweep:
        """Forward initialization x_i = μ_i for ``order`` (free nodes whose parents are clamped
        or earlier in the order), into the working states and then into x's columns.

        Returns what the inference that follows needs to start from it
        (``prepare(x, sweep=…)``): the fixed parts of μ computed here, σ(x_i) of the swept
        senders in the σ buffer, and the nodes left at ε = 0 exactly, none of which it then
        computes again.
        """
        buf = self._prepare(x, sweep=None, load=False)
        plan = self._sweep_plan(buf, order)
        swept = plan.swept
        for step in plan.steps:
            step()
        finite = plan.write()  # the swept states into x: whether they are all finite, if known
        # x_i = μ_i means ε_i = 0 only for finite values (NaN − NaN is NaN): after non-finite
        # data or weights nothing is taken as 0, so the energy monitor sees the NaN
        if finite is None:
            finite = self._finite(swept)
        # the token after the write into x
        return Sweep(self.bound, self._token(x, buf), swept if finite else frozenset())

    def sweep_steps(self, x: torch.Tensor, order: list[int]) -> list[Callable[[], object]]:
        """What one update runs after clamping x, as steps: the fixed parts of μ (σ(x) of the
        clamped senders, their products), x_i = μ_i over ``order``, and the write of the swept
        states into x. Binds the program to x first (eagerly); the steps hold while that
        binding does (:class:`~pcgraph.engine.compiled_update.CompiledUpdate` traces them)."""
        buf = self._prepare(x, sweep=None, load=False)
        fixed = self.bound.derived.consts
        assert fixed is not None, "prepare() derives the fixed parts"
        plan = self._sweep_plan(buf, order)
        return [*fixed.steps, *plan.steps, plan.write]

    def _sweep_plan(self, buf: Buffers, order: list[int]) -> SweepPlan:
        """The forward sweep over ``order`` as a list of steps bound to the current views (a
        node whose only parent is one plain linear edge: one product straight into its
        states), with σ(x) of each sender computed once. Also returns the swept nodes left at
        ε = 0 and the write of the nodes in ``order`` into x, which says whether they are all
        finite (None: not known). Derived once per order for the bound program."""
        bound = self.bound
        key = tuple(order)
        found = bound.derived.sweeps.get(key)
        if found is not None:
            return found
        xv, sent, edges = bound.xv, bound.sent_views, self.net.edges
        single = self._single_parent()
        sigma = bound.sent_steps  # σ(x_j) into the σ buffer, per free sender
        fresh: set[int] = set()  # senders whose σ(x) is current in the σ buffer at that point
        steps: list[Step] = []
        # the working states of the free nodes the sweep does not write, read from x; those
        # it writes are written back into x at the end (the working copy stays current: an
        # inference that follows on the unchanged x reads nothing again)
        ordered = set(order)
        kept = [k for k, i in enumerate(self.free_nodes) if i not in ordered]
        moved = [k for k, i in enumerate(self.free_nodes) if i in ordered]
        if kept:
            steps.append(
                copy_all([bound.x_blocks[k] for k in kept], [bound.x_cols[k] for k in kept])
            )
        for i in order:
            sources = [edges[e].source for e in self.var_parents[i]]
            assert sources or self.const_parents[i], (
                f"forward sweep reached {self.net.nodes[i].name!r} too early"
            )
            for src in sources:
                if src not in fresh and src in sigma:
                    steps.append(sigma[src])
                fresh.add(src)
            kern = single.get(i)
            if kern is not None:  # one plain linear edge from a free node: W σ(x_j) + b
                steps.append(forward_step(kern, sent[sources[0]], xv[i]))
            else:
                steps.append(functools.partial(self._sweep_node, buf, i))
        swept = self.sweepable.intersection(order)
        # σ(x_i) of the swept senders, for the first errors() call
        steps += [sigma[i] for i in sorted(swept) if i in sigma and i not in fresh]
        write = (
            write_back([bound.x_cols[k] for k in moved], [bound.x_blocks[k] for k in moved])
            if moved
            else lambda: True
        )
        found = bound.derived.sweeps[key] = SweepPlan(steps, frozenset(swept), write)
        return found

    def _sweep_node(self, buf: Buffers, i: int) -> None:
        """x_i = μ_i in a forward sweep, the general path (fixed part, then each free parent's
        prediction, accumulated in x_i's view; a held node at its energy's mean)."""
        bound = self.bound
        out, acc, edges = bound.xv[i], False, self.net.edges
        c = buf.const[i]
        if c is not None:
            out.copy_(c)
            acc = True
        for e in self.var_parents[i]:
            self.kernel(e).forward_into(bound.sent_views[edges[e].source], out, accumulate=acc)
            acc = True
        if i in self.free_ce:  # a held node swept here is free: it starts where
            out.copy_(self.energy_of[i].mean(out))  # inference holds it

    def _finite(self, nodes: frozenset[int]) -> bool:
        """Whether the states of ``nodes`` are all finite: one reduction over the free nodes'
        working states when they are one range (a NaN or ±inf makes the sum non-finite; so
        may an overflow of huge values, which is then taken as non-finite too: only an
        optimization is lost)."""
        if not nodes:
            return True
        bound = self.bound
        if bound.free_x is not None:  # the free nodes' working states as one range
            return math.isfinite(float(bound.free_x.sum()))
        return all(math.isfinite(float(bound.xv[i].sum())) for i in nodes)

    def swept(self, x: torch.Tensor, buf: Buffers, sweep: Sweep | None) -> frozenset[int]:
        """See :meth:`pcgraph.compiler.protocol.Program.swept`: the nodes ``sweep`` left at
        ε = 0, while it holds (empty otherwise)."""
        if sweep is not None and self._holds(sweep, x, buf, self.binding_key(x, buf)):
            return sweep.nodes
        return frozenset()
