"""The state-gradient half of a bound inference program: ∂E/∂x of every free node,

    ∂E/∂x_j = own_j − σ_j'(x_j) ⊙ Σ_{i ∈ children(j)} J_{f_ji}ᵀ δ_i,

as one step per node over the views of one set of buffers (:class:`GradientSteps`). A plain
linear only child gets a specialised closure (:func:`pcgraph.compiler.steps.message_step`); every
other node takes the general path. After a forward sweep, the nodes still at ε = 0 send no
message, and the steps for such a set are derived once and cached. While the fast paths are off
(:mod:`pcgraph.fast`) no closure is bound: every node takes the general path.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from pcgraph import fast
from pcgraph.compiler.protocol import Sent
from pcgraph.compiler.recipes import GradRecipe
from pcgraph.compiler.steps import (
    Step,
    copier,
    message_step,
    sgd_message_step,
    zeroer,
)
from pcgraph.ops.kernel import write_into
from pcgraph.ops.linear_kernel import LinearKernel

__all__ = ["GradientSteps"]

Views = list[torch.Tensor]
Planned = list[tuple[Step | None, GradRecipe]]


class GradientSteps:
    """∂E/∂x into the gradient buffer's views, built from the program's gradient plan
    (:attr:`pcgraph.compiler.step_plan.StepPlan.grad_plan`) for one set of views: x, δ, ∂E/∂x
    and σ(x) per node. Rebuilt whenever the buffers, the parameter objects or the switch of
    the fast paths change."""

    def __init__(
        self,
        grad_plan: list[GradRecipe],
        x: Views,
        delta: Views,
        grad: Views,
        sent: dict[int, torch.Tensor],
    ) -> None:
        self.x, self.delta, self.grad, self.sent = x, delta, grad, sent
        # the specialised closures (message_step, sgd_message_step) are fast paths whose
        # reference is :meth:`general` (and the caller's plain update for the fused SGD step)
        self.specialised = fast.enabled()
        self.steps: Planned = []
        for r in grad_plan:
            j, fn = r.node, None
            if r.fresh and self.specialised:
                child, tgt = r.children[0]
                assert isinstance(child, LinearKernel)
                own = delta[j] if r.has_own else None
                fn = message_step(child, delta[tgt], r.activation, x[j], sent[j], own, grad[j])
            self.steps.append((fn, r))
        # per quiet set: (every step, the steps of the nodes that move, the still nodes)
        self._quiet: dict[frozenset[int], tuple[Planned, Planned, frozenset[int]]] = {}
        # per (quiet set, γ): the steps of a plain gradient step with the fusable ones fused
        self._sgd: dict[tuple[frozenset[int], float], tuple[Planned, frozenset[int]]] = {}

    def run(self, sent: Sent, quiet: frozenset[int], stacked: Views | None) -> None:
        """One evaluation: ``sent`` is σ(x) of the free senders, ``quiet`` the nodes at ε = 0
        and ``stacked`` the per-node views of the stacked edges' summed messages (or None)."""
        for fn, recipe in self.steps if not quiet else self.quiet_steps(quiet):
            if fn is not None:
                fn()
            else:
                self.general(sent, stacked, recipe)

    def run_sgd(
        self, sent: Sent, quiet: frozenset[int], stacked: Views | None, lr: float
    ) -> frozenset[int]:
        """One evaluation for a plain gradient step x ← x − γ ∂E/∂x: like ``run``, except that
        the :meth:`still` nodes get no gradient written (the caller does not step them) and the
        nodes whose whole step can be fused (:func:`pcgraph.compiler.steps.sgd_message_step`)
        take it here and write no gradient either. Returns the fused nodes."""
        steps, fused = self._sgd_plan(quiet, lr)
        for fn, recipe in steps:
            if fn is not None:
                fn()
            else:
                self.general(sent, stacked, recipe)
        return fused

    def _sgd_plan(self, quiet: frozenset[int], lr: float) -> tuple[Planned, frozenset[int]]:
        key = (quiet, lr)
        found = self._sgd.get(key)
        if found is not None:
            return found
        base = self._quiet_plan(quiet)[1] if quiet else self.steps
        steps: Planned = []
        fused: set[int] = set()
        for fn, r in base:
            j, step = r.node, None
            if r.fresh and len(r.children) == 1 and not r.stacked_out and self.specialised:
                child, tgt = r.children[0]
                own = r.has_own and j not in quiet
                if isinstance(child, LinearKernel) and tgt not in quiet:
                    step = sgd_message_step(
                        child,
                        self.delta[tgt],
                        r.activation,
                        self.x[j],
                        self.sent[j],
                        self.delta[j] if own else None,
                        lr,
                    )
            if step is not None:
                steps.append((step, r))
                fused.add(j)
            else:
                steps.append((fn, r))
        if len(self._sgd) >= 64:  # a few (quiet set, γ) pairs per run in practice
            self._sgd.clear()
        found = self._sgd[key] = (steps, frozenset(fused))
        return found

    def fused(self, quiet: frozenset[int], lr: float) -> frozenset[int]:
        """The nodes whose whole plain gradient step :meth:`run_sgd` takes itself."""
        return self._sgd_plan(quiet, lr)[1]

    def still(self, quiet: frozenset[int]) -> frozenset[int]:
        """The nodes whose ∂E/∂x is exactly 0 when the nodes in ``quiet`` are at ε = 0: no own
        error and no child with an error (the error front has not reached them yet)."""
        return self._quiet_plan(quiet)[2] if quiet else frozenset()

    def quiet_steps(self, quiet: frozenset[int]) -> Planned:
        """The steps when the nodes in ``quiet`` are at ε = 0: their messages are dropped, and
        a node with neither an own error nor a message gets ∂E/∂x = 0. Cached per ``quiet``."""
        return self._quiet_plan(quiet)[0]

    def _quiet_plan(self, quiet: frozenset[int]) -> tuple[Planned, Planned, frozenset[int]]:
        found = self._quiet.get(quiet)
        if found is not None:
            return found
        gv, dv = self.grad, self.delta
        steps: Planned = []
        still: set[int] = set()
        for fn, r in self.steps:
            j = r.node
            own = r.has_own and j not in quiet
            live = tuple((k, c) for k, c in r.children if c not in quiet)
            if not live and not r.stacked_out:
                if not own:
                    still.add(j)
                steps.append((copier(dv[j], gv[j]) if own else zeroer(gv[j]), r))
            elif len(live) == len(r.children) and own == r.has_own:
                steps.append((fn, r))
            elif r.fresh and live and self.specialised:  # the linear child is live, own error 0
                child, tgt = live[0]
                assert isinstance(child, LinearKernel)
                msg = message_step(
                    child, dv[tgt], r.activation, self.x[j], self.sent[j], None, gv[j]
                )
                steps.append((msg, r))
            else:  # the nodes at ε = 0 send nothing: the recipe without them
                steps.append((None, replace(r, has_own=own, children=live, fresh=False)))
        moving = [(fn, r) for fn, r in steps if r.node not in still]
        found = self._quiet[quiet] = (steps, moving, frozenset(still))
        return found

    def general(self, sent: Sent, stacked: Views | None, recipe: GradRecipe) -> None:
        """∂E/∂x_j, the general path: messages accumulated in its block of ∂E/∂x."""
        xv, dv = self.x, self.delta
        j, has_own, children, act = recipe.node, recipe.has_own, recipe.children, recipe.activation
        stacked_out = recipe.stacked_out
        out, acc = self.grad[j], False
        for kern, tgt in children:  # Σ_c J_fᵀ δ_c accumulated in ∂E/∂x_j's columns
            kern.vjp_into(sent[j], dv[tgt], out, accumulate=acc)
            acc = True
        if stacked_out:
            assert stacked is not None
            write_into(out, stacked[j], accumulate=acc)
            acc = True
        if not acc:
            if has_own:
                out.copy_(dv[j])
            return
        if act is not None:  # ⊙ σ'(x_j), from σ(x_j) where σ' is a function of σ
            act.vjp_(out, xv[j], sent[j])
        if has_own:
            torch.sub(dv[j], out, out=out)
        else:
            out.neg_()
