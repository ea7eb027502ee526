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

from pcgraph import fast
from pcgraph.compiler.gradient import GradientSteps
from pcgraph.compiler.program_readout import Readout
from pcgraph.compiler.program_sweep import ForwardSweep
from pcgraph.compiler.protocol import Buffers, Quiet, Sent
from pcgraph.compiler.recipes import ErrorRecipe
from pcgraph.compiler.steps import (
    copy_all,
    error_step,
    without_grad,
    write_back,
)
from pcgraph.errors import ConfigError
from pcgraph.ops.kernel import write_into

__all__ = ["InferenceProgram"]


class InferenceProgram(ForwardSweep, Readout):
    """Precomputed plan of the local-gradient inference step for one clamp set, with its
    reused buffers per batch size."""

    def _bind_steps(self, buf: Buffers) -> None:
        """The step closures of :mod:`pcgraph.compiler.steps` for the current buffers and
        parameters; every other node keeps the general path (None)."""
        xv, ev, dv, gv, sent = self._xv, self._ev, self._dv, self._gv, self._sent_views
        # σ(x_j) into the σ buffer per free sender, its kernel bound to these views
        self.sent_steps = {
            j: act.into_step(xv[j], sent[j]) for j, act in self.sent_plan if act is not None
        }
        self.error_steps = []
        single = self._single_parent()
        for recipe in self.err_plan:
            i = recipe.node
            kern = single.get(i)
            src = recipe.parents[0][1] if kern is not None else -1
            fn = None if kern is None else error_step(kern, sent[src], xv[i], ev[i])
            self.error_steps.append((recipe, fn))
        self.gradient_steps = GradientSteps(self.grad_plan, xv, dv, gv, sent)
        self._sweeps = {}
        self._consts = None
        self._grad_steps = {}
        # new bindings (other buffers, new weight storage): the fixed parts are computed again
        self._const_token = None
        self._swept = frozenset()

    def bound_state(self) -> object:
        """See :meth:`pcgraph.compiler.protocol.Program.bound_state`."""
        # copies of the caches: clearing one later must not drop what a graph refers to
        return (
            dict(self.sent_steps),
            list(self.error_steps),
            self.gradient_steps,
            dict(self._sweeps),
            self._consts,
            dict(self._grad_steps),
            dict(self._energy_steps),
            dict(self._parts),
        )

    def prepare(self, x: torch.Tensor, *, reuse_consts: bool = False) -> Buffers:
        """Start of a batch: cache σ(x_j) of clamped sources and the fixed parts of μ, and read
        the free nodes' states from x into the working states ``buf.states``.

        Args:
            reuse_consts: keep the fixed parts computed by :meth:`forward_sweep` when neither x
                nor the weights changed since (the caller vouches for the weights: fused
                optimizers change them without bumping ``_version``; off in CUDA-graph capture).
                The working states are then the sweep's, which it wrote into x as well: a write
                into x that bumps no ``_version`` (through ``.data``, numpy, a C pointer) after
                the sweep is not read, and the end of inference writes over it.
        """
        return self._prepare(x, reuse_consts=reuse_consts, load=True)

    def _prepare(self, x: torch.Tensor, *, reuse_consts: bool, load: bool) -> Buffers:
        """:meth:`prepare`; ``load=False`` leaves the working states unread (a forward sweep
        reads those of the nodes it does not write itself)."""
        # no zeroing: grad's clamped columns and eps's root columns are never written, and
        # every other column is overwritten each step
        buf = self.buffers(x.shape[0])
        # the switch of the fast paths too: every bound step is bound again when it changes
        key = (x.data_ptr(), tuple(x.shape), x.stride(), id(buf), fast.enabled())
        if key != self._views_key:  # views of the (reused) buffers, built once per buffer
            n = range(len(self.net.nodes))
            assert buf.sent_buf is not None and buf.states is not None
            # the steps move the free nodes' contiguous working states, not x's columns
            self._x_cols = [self._view(x, i) for i in self.free_nodes]
            self._x_blocks = [self.node_block(buf.states, i) for i in self.free_nodes]
            blocks = dict(zip(self.free_nodes, self._x_blocks, strict=True))
            self._xv = [blocks[i] if i in blocks else self._view(x, i) for i in n]
            self._ev = [self.node_block(buf.eps, i) for i in n]
            self._dv = [self.node_block(buf.delta, i) for i in n]
            self._gv = [self.node_block(buf.grad, i) for i in n]
            sv = [self.node_block(buf.sent_buf, i) for i in n]
            identity = [self.net.nodes[i].activation.is_identity for i in n]
            self._sent_views = {j: self._xv[j] if identity[j] else sv[j] for j in n}
            buf.sent_free = {j: self._sent_views[j] for j in self.sent_free}
            span = self.free_range
            free_x = None if span is None else self._block_range(buf.states, *span)
            self._free_x = free_x
            self._target = (
                (buf.states, buf.grad)
                if span is None or free_x is None
                else (free_x, self._block_range(buf.grad, *span))
            )
            self._parts = {}  # they hold blocks of the buffers bound before
            self._load = copy_all(self._x_blocks, self._x_cols) if self._x_cols else None
            self._store = write_back(self._x_cols, self._x_blocks) if self._x_cols else None
            self._views_key = key
            self._views_buf = buf
            self._steps_key = None
            self._energy_steps = {}
        # the bound steps hold the weights' storage: a parameter given new data
        # (``p.data = …``) binds them again
        weights_key = tuple(p.data_ptr() for p in self.bound_params)
        if weights_key != self._steps_key:
            with torch.no_grad():  # the library choices are made for products outside autograd
                self._bind_steps(buf)
            self._steps_key = weights_key
        if self.stacks:
            if buf.stacked_mu is None or buf.stacked_mu.shape != x.shape:
                buf.stacked_mu = torch.zeros_like(x)
                buf.stacked_msg = torch.zeros_like(x)
            self._smu = [self._view(buf.stacked_mu, i) for i in range(len(self.net.nodes))]
            self._smsg = [
                self._view(buf.stacked_msg, i)  # type: ignore[arg-type]
                for i in range(len(self.net.nodes))
            ]
            for st in self.stacks:
                st.restack()
        if reuse_consts and self._const_token == self._token(x, buf):
            return buf  # the working states are the ones the sweep wrote into x
        self._const_token = None
        self._swept = frozenset()
        with torch.no_grad():
            if load and self._load is not None:
                self._load()
            if self._consts is None:
                self._consts = self._const_plan(x, buf)
                self._grad_steps = {}  # they read the clamped senders' σ(x) bound here
            steps, buf.sent, buf.const = self._consts
            for step in steps:
                step()
        return buf

    @without_grad
    def errors(self, x: torch.Tensor, buf: Buffers, quiet: Quiet | None = None) -> Sent:
        """Compute ε and δ for the current states; returns σ(x_j) of the free senders.

        ``x`` must be the buffer passed to :meth:`prepare` (its views are cached there). Every
        result is written into the preallocated buffers (σ, ε): the loop allocates nothing for
        ops with in-place forms (linear).

        Args:
            quiet: from :meth:`~pcgraph.compiler.plan.ClampPlan.quiet_schedule` after
                :meth:`swept_since_prepare`: ``quiet.zero`` are gaussian nodes known to be at
                ε = 0, whose prediction is not computed (``buf.quiet`` records them for the
                messages, energies and weight gradients that read these errors);
                ``quiet.fresh`` are free nodes whose σ(x) in the σ buffer is current.
        """
        xv, ev = self._xv, self._ev
        sent = buf.sent_free
        skip, fresh = (quiet.zero, quiet.fresh) if quiet is not None else (frozenset(), frozenset())
        was_zero, buf.quiet = buf.quiet, skip  # blocks that are 0 already need no zeroing
        for j, step in self.sent_steps.items():
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
        for recipe, fn in self.error_steps:
            i = recipe.node
            if i in skip:  # swept: ε = 0 exactly (a CE node is never in skip)
                if i not in was_zero:
                    ev[i].zero_()
            elif fn is not None:
                fn()
            else:
                self._error(buf, sent, recipe)
        if buf.precision is not None:
            torch.mul(buf.eps, buf.precision, out=buf.delta)
        return sent

    def _error(self, buf: Buffers, sent: Sent, recipe: ErrorRecipe) -> None:
        """ε_i = x_i − μ_i, the general path: μ accumulated edge by edge in ε_i's block."""
        xv, ev, const = self._xv, self._ev, buf.const
        i, var, stacked_in = recipe.node, recipe.parents, recipe.stacked_in
        if recipe.custom:  # not gaussian: μ, then ε asked of the node's Energy
            mu = const[i]
            for kern, src in var:
                out = kern(sent[src])
                mu = out if mu is None else mu + out  # outputs may be views: no in-place
            if stacked_in:
                mu = self._smu[i] if mu is None else mu + self._smu[i]
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
            write_into(out, self._smu[i], accumulate=acc)
        torch.sub(xv[i], out, out=out)

    def _energy_error(self, buf: Buffers, i: int, mu: torch.Tensor) -> None:
        # the energy's "ε" (CE: x − softmax(μ) Σx; Bernoulli: x − σ(μ); a user's), so that
        # δ = w ε as for gaussian nodes; μ is kept for the energy
        self._ev[i].copy_(self.energy_of[i].error(self._xv[i], mu))
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
        if self.stacks:
            assert buf.stacked_msg is not None
            buf.stacked_msg.zero_()
            for st in self.stacks:
                st.add_messages(self._dv, buf.stacked_msg)
        assert self.gradient_steps is not None, "prepare() binds the gradient steps"
        stacked = self._smsg if self.stacks else None
        if sgd_lr is not None:
            self.gradient_steps.run_sgd(sent, buf.quiet, stacked, sgd_lr)
        else:
            self.gradient_steps.run(sent, buf.quiet, stacked)

    def update_parts(
        self, x: torch.Tensor, buf: Buffers, *, sgd_lr: float | None = None
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The (states, ∂E/∂x) column ranges that a plain gradient step must move after
        :meth:`state_grad` with ``sgd_lr``: the free nodes whose gradient is not known to
        be exactly 0 at the errors of ``buf.quiet``, adjacent nodes merged into one range (one
        kernel for a whole chain), less those that :meth:`state_grad` with the same ``sgd_lr``
        stepped itself. Cached per quiet set and γ for the current buffers."""
        key = (buf.quiet, self._views_key, sgd_lr)
        found = self._parts.get(key)
        if found is not None:
            return found
        assert self.gradient_steps is not None, "prepare() binds the gradient steps"
        still = self.gradient_steps.still(buf.quiet)
        if sgd_lr is not None:
            still = still | self.gradient_steps.fused(buf.quiet, sgd_lr)
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
        if len(self._parts) >= 64:  # a few quiet sets per (T, clamp set) in practice
            self._parts.clear()
        self._parts[key] = found
        return found

    def store(self, x: torch.Tensor, buf: Buffers) -> None:
        """See :meth:`pcgraph.compiler.protocol.Program.store`: the free nodes' working states
        into their columns of x, as one bound step (:func:`~pcgraph.compiler.steps.write_back`)."""
        if buf is not self._views_buf or x.data_ptr() != self._views_key[0]:  # type: ignore[index]
            raise ConfigError(
                "store() needs the states and buffers of the last prepare() on this program"
            )
        if self._store is not None:
            with torch.no_grad():
                self._store()

    def step_target(self, x: torch.Tensor, buf: Buffers) -> tuple[torch.Tensor, torch.Tensor]:
        """See :meth:`pcgraph.compiler.protocol.Program.step_target`: the free nodes' blocks
        of the working states and of ∂E/∂x (flat), bound in :meth:`prepare`."""
        assert self._target is not None and buf is self._views_buf, "prepare() first"
        return self._target

    def set_state_grad(self, buf: Buffers, g: torch.Tensor) -> None:
        """See :meth:`pcgraph.compiler.protocol.Program.set_state_grad`."""
        with torch.no_grad():
            for i in self.free_nodes:
                self._gv[i].copy_(self._view(g, i))
