"""The execution plan of inference for one clamp set: what runs each step, with reused buffers.

Built once per (network, clamp set) and cached; per batch size it keeps its [B, D] buffers, so
the inference loop does no graph analysis and allocates no state tensors. One step computes

    μ_i = Σ_j f_ji(σ_j(x_j)),  ε_i = x_i − μ_i,  δ_i = −∂E/∂μ_i,
    ∂E/∂x_j = own_j − σ_j'(x_j) ⊙ Σ_{i ∈ children(j)} J_{f_ji}ᵀ δ_i

for the free nodes only. Contributions of edges whose source is clamped do not change during
inference and are computed once per batch; messages are sent only to free sources.
"""

from __future__ import annotations

import torch

from pcgraph.compiler.bound import Sweep
from pcgraph.compiler.program_readout import Readout
from pcgraph.compiler.program_sweep import ForwardSweep
from pcgraph.compiler.protocol import Buffers, Quiet, Sent
from pcgraph.compiler.recipes import ErrorRecipe
from pcgraph.compiler.steps import (
    without_grad,
)
from pcgraph.errors import ConfigError
from pcgraph.ops.kernel import write_into

__all__ = ["InferenceProgram"]

_ALL_COMPUTED = Quiet(zero=frozenset(), fresh=frozenset())  # no schedule: every error computed


class InferenceProgram(ForwardSweep, Readout):
    """Precomputed plan of the local-gradient inference step for one clamp set, with its
    reused buffers per batch size."""

    def bound_state(self) -> object:
        """See :meth:`pcgraph.compiler.protocol.Program.bound_state`: the bound program."""
        return self._bound

    def prepare(self, x: torch.Tensor, *, sweep: Sweep | None = None) -> Buffers:
        """Start of a batch: bind the program to x and its buffers (a new
        :class:`~pcgraph.compiler.bound.BoundProgram` when they, the parameters' storage or the
        switch of the fast paths changed), compute σ(x_j) of the clamped senders and the fixed
        parts of μ, and read the free nodes' states from x into the working states.

        Args:
            sweep: what :meth:`forward_sweep` returned for x, if it ran just before. While it
                holds (:class:`~pcgraph.compiler.bound.Sweep`), the sweep's fixed parts and
                working states are taken as they are; nothing is computed again.
        """
        return self._prepare(x, sweep=sweep, load=True)

    def _prepare(self, x: torch.Tensor, *, sweep: Sweep | None, load: bool) -> Buffers:
        """:meth:`prepare`; ``load=False`` leaves the working states unread (a forward sweep
        reads those of the nodes it does not write itself)."""
        # no zeroing: grad's clamped columns and eps's root columns are never written, and
        # every other column is overwritten each step
        buf = self.buffers(x.shape[0])
        key = self.binding_key(x, buf)
        bound = self._bound
        if bound is None or bound.key != key:
            bound = self._bound = self.bind(x, buf, key)
        for st in self.stacks:
            st.restack()
        if sweep is not None and self._holds(sweep, x, buf, key):
            return buf  # the working states are the ones the sweep wrote into x
        derived = bound.derived
        with torch.no_grad():
            if load and bound.load is not None:
                bound.load()
            if derived.consts is None:
                derived.consts = self._const_plan(x, buf)
            fixed = derived.consts
            buf.sent, buf.const = fixed.sent, fixed.const
            for step in fixed.steps:
                step()
        return buf

    @without_grad
    def errors(self, x: torch.Tensor, buf: Buffers, quiet: Quiet | None = None) -> Sent:
        """Compute ε and δ for the current states; returns σ(x_j) of the free senders.

        ``x`` must be the buffer passed to :meth:`prepare` (the program is bound to it). Every
        result is written into the preallocated buffers (σ, ε): the loop allocates nothing for
        ops with in-place forms (linear).

        Args:
            quiet: from :meth:`~pcgraph.compiler.plan.ClampPlan.quiet_schedule` after
                :meth:`swept`: ``quiet.zero`` are gaussian nodes known to be at
                ε = 0, whose prediction is not computed (``buf.quiet`` records them for the
                messages, energies and weight gradients that read these errors);
                ``quiet.fresh`` are free nodes whose σ(x) in the σ buffer is current.
        """
        bound = self.bound
        xv, ev = bound.xv, bound.ev
        sent = buf.sent_free
        q = _ALL_COMPUTED if quiet is None else quiet
        skip, fresh, stale, stash = q.zero, q.fresh, q.stale, q.stash
        was_zero, buf.quiet = buf.quiet, skip  # blocks that are 0 already need no zeroing
        kept = bound.derived.kept_mu
        for j, step in bound.sent_steps.items():
            if j not in fresh:
                step()
        const = buf.const
        for i, var in self.hold_plan:  # held nodes first: x_i ← mean(μ_i)
            mu = const[i]
            for fwd, src in var:
                out = fwd(sent[src])
                mu = out if mu is None else mu + out  # outputs may be views: no in-place
            assert mu is not None
            xv[i].copy_(self.energy_of[i].mean(mu))
            act = self.sent_fn.get(i)
            if act is not None:
                act.apply_into(xv[i], sent[i])
        if self.stacks:
            assert buf.stacked_mu is not None
            buf.stacked_mu.zero_()
            for st in self.stacks:
                st.add_predictions(sent, buf.stacked_mu)
        for recipe, fn in bound.error_steps:
            i = recipe.node
            if i in skip:  # swept: ε = 0 exactly (a CE node is never in skip)
                if i in stash and not recipe.stacked_in:  # x = μ: kept for a later ε
                    mu = kept.get(i)
                    if mu is None:
                        mu = kept[i] = torch.empty_like(xv[i])
                    mu.copy_(xv[i])
                if i not in was_zero:
                    ev[i].zero_()
            elif i in stale and i in kept and not recipe.stacked_in:  # μ is the sweep's
                torch.sub(xv[i], kept[i], out=ev[i])
            elif fn is not None:
                fn()
            else:
                self._error(buf, sent, recipe)
        if buf.precision is not None:
            torch.mul(buf.eps, buf.precision, out=buf.delta)
        return sent

    def _error(self, buf: Buffers, sent: Sent, recipe: ErrorRecipe) -> None:
        """ε_i = x_i − μ_i, the general path: μ accumulated edge by edge in ε_i's block."""
        bound = self.bound
        xv, ev, const = bound.xv, bound.ev, buf.const
        i, var, stacked_in = recipe.node, recipe.parents, recipe.stacked_in
        if recipe.custom:  # not gaussian: μ, then ε asked of the node's Energy
            mu = const[i]
            for kern, src in var:
                out = kern(sent[src])
                mu = out if mu is None else mu + out  # outputs may be views: no in-place
            if stacked_in:
                assert bound.smu is not None
                mu = bound.smu[i] if mu is None else mu + bound.smu[i]
            assert mu is not None
            self._energy_error(buf, i, mu)
            return
        out = ev[i]
        c = const[i]
        if c is None and len(var) == 1 and not stacked_in:  # one parent (chains)
            kern, src = var[0]
            kern.error_into(sent[src], xv[i], out)
            return
        acc = False
        if c is not None:
            if not var and not stacked_in:  # a fixed prediction: ε = x − μ, one kernel
                torch.sub(xv[i], c, out=out)
                return
            out.copy_(c)
            acc = True
        for kern, src in var:  # μ_i accumulated in ε_i's block, then ε = x − μ
            kern.forward_into(sent[src], out, accumulate=acc)
            acc = True
        if stacked_in:
            assert bound.smu is not None
            write_into(out, bound.smu[i], accumulate=acc)
        torch.sub(xv[i], out, out=out)

    def _energy_error(self, buf: Buffers, i: int, mu: torch.Tensor) -> None:
        # the energy's "ε" (CE: x − softmax(μ) Σx; Bernoulli: x − σ(μ); a user's), so that
        # δ = w ε as for gaussian nodes; μ is kept for the energy
        bound = self.bound
        bound.ev[i].copy_(self.energy_of[i].error(bound.xv[i], mu))
        buf.ce_mu[i] = mu

    @without_grad
    def state_grad(
        self, x: torch.Tensor, buf: Buffers, sent: Sent, *, sgd_lr: float | None = None
    ) -> None:
        """∂E/∂x into ``buf.grad`` on the free columns (messages only to free sources).

        A free cross-entropy node has no own term: errors() holds it at softmax(μ). Children
        in ``buf.quiet`` (ε = 0) send no message; a node with no error around it gets 0.

        With ``sgd_lr`` (γ of the plain gradient step the caller takes), a node with no error
        around it gets nothing written instead, and a node whose whole step fuses into one
        native pass takes it here, x ← x − γ ∂E/∂x; the caller then steps only
        :meth:`update_parts`.
        """
        bound = self.bound
        if self.stacks:
            assert buf.stacked_msg is not None
            buf.stacked_msg.zero_()
            for st in self.stacks:
                st.add_messages(bound.dv, buf.stacked_msg)
        if sgd_lr is not None:
            bound.gradient_steps.run_sgd(sent, buf.quiet, bound.smsg, sgd_lr)
        else:
            bound.gradient_steps.run(sent, buf.quiet, bound.smsg)

    def update_parts(
        self, x: torch.Tensor, buf: Buffers, *, sgd_lr: float | None = None
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The (states, ∂E/∂x) column ranges that a plain gradient step must move after
        :meth:`state_grad` with ``sgd_lr``: the free nodes whose gradient is not known to
        be exactly 0 at the errors of ``buf.quiet``, adjacent nodes merged into one range (one
        kernel for a whole chain), less those that :meth:`state_grad` with the same ``sgd_lr``
        stepped itself. Derived once per quiet set and γ for the bound program."""
        bound = self.bound
        parts = bound.derived.parts
        key = (buf.quiet, sgd_lr)
        found = parts.get(key)
        if found is not None:
            return found
        still = bound.gradient_steps.still(buf.quiet)
        if sgd_lr is not None:
            still = still | bound.gradient_steps.fused(buf.quiet, sgd_lr)
        spans: list[list[int]] = []
        for i in sorted(self.free_nodes, key=lambda i: self.net.nodes[i].offset):
            if i in still:
                continue
            node = self.net.nodes[i]
            if spans and spans[-1][1] == node.offset:
                spans[-1][1] = node.offset + node.size
            else:
                spans.append([node.offset, node.offset + node.size])
        assert buf.states is not None
        found = [
            (self._block_range(buf.states, a, b), self._block_range(buf.grad, a, b))
            for a, b in spans
        ]
        if len(parts) >= 64:  # a few quiet sets per (T, clamp set) in practice
            parts.clear()
        parts[key] = found
        return found

    def store(self, x: torch.Tensor, buf: Buffers) -> None:
        """See :meth:`pcgraph.compiler.protocol.Program.store`: the free nodes' working states
        into their columns of x, as one bound step (:func:`~pcgraph.compiler.steps.write_back`)."""
        bound = self._bound
        if bound is None or buf is not bound.buf or x.data_ptr() != bound.x_ptr:
            raise ConfigError(
                "store() needs the states and buffers of the last prepare() on this program"
            )
        if bound.store is not None:
            with torch.no_grad():
                bound.store()

    def step_target(self, x: torch.Tensor, buf: Buffers) -> tuple[torch.Tensor, torch.Tensor]:
        """See :meth:`pcgraph.compiler.protocol.Program.step_target`: the free nodes' blocks
        of the working states and of ∂E/∂x (flat), bound in :meth:`prepare`."""
        bound = self.bound
        assert buf is bound.buf, "prepare() first"
        return bound.target

    def set_state_grad(self, buf: Buffers, g: torch.Tensor) -> None:
        """See :meth:`pcgraph.compiler.protocol.Program.set_state_grad`."""
        with torch.no_grad():
            gv = self.bound.gv
            for i in self.free_nodes:
                gv[i].copy_(self._view(g, i))
