"""The execution plan of inference for one clamp set: what runs each step, with reused buffers.

Built once per (network, clamp set) and cached; per batch size it keeps its [B, D] buffers, so
the inference loop does no graph analysis and allocates no state tensors. One step computes

    μ_i = Σ_j f_ji(σ_j(x_j)),  ε_i = x_i − μ_i,  δ_i = −∂E/∂μ_i,
    ∂E/∂x_j = own_j − σ_j'(x_j) ⊙ Σ_{i ∈ children(j)} J_{f_ji}ᵀ δ_i

for the free nodes only. Contributions of edges whose source is clamped do not change during
inference and are computed once per batch; messages are sent only to free sources.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch

from pcgraph import fast
from pcgraph.cache import BoundedCache
from pcgraph.compiler.gradient import GradientSteps
from pcgraph.compiler.network import PCNetwork
from pcgraph.compiler.protocol import Buffers, Quiet, Sent
from pcgraph.compiler.step_plan import StepPlan
from pcgraph.compiler.steps import (
    Step,
    copier,
    copy_all,
    error_step,
    forward_step,
    param_grad_step,
    without_grad,
    write_back,
    zero_grads_step,
)
from pcgraph.errors import ConfigError
from pcgraph.ops import native
from pcgraph.ops.kernel import EdgeKernel, write_into
from pcgraph.ops.linear_kernel import LinearKernel

__all__ = ["InferenceProgram"]


class InferenceProgram(StepPlan):
    """Precomputed plan of the local-gradient inference step for one clamp set, with its
    reused buffers per batch size."""

    node_blocked = True  # ε, δ, σ(x) node-blocked (see Buffers): per-node energies by blocks

    def __init__(self, net: PCNetwork, clamp: frozenset[str]) -> None:
        super().__init__(net, clamp)
        self._buffers: BoundedCache[int, Buffers] = BoundedCache(4)  # per batch size
        self._views_key: tuple[object, ...] | None = None
        self._const_token: tuple[object, ...] | None = None
        self._swept: frozenset[int] = frozenset()
        self._steps_key: tuple[int, ...] | None = None
        self._params = list(net.parameters())  # the same objects for the network's life
        self.error_steps: list[tuple[int, Step | None, tuple[object, ...]]] = []
        self.sent_steps: dict[int, Step] = {}
        self.gradient_steps: GradientSteps | None = None  # bound with the buffers' views
        self._parts: dict[tuple[object, ...], list[tuple[torch.Tensor, torch.Tensor]]] = {}
        # per-node energies in one native call, bound to the ε buffer, per set of nodes
        self._energy_steps: dict[tuple[frozenset[int], int], native.BoundEnergy | None] = {}
        self._sweeps: dict[
            tuple[int, ...], tuple[list[Step], frozenset[int], Callable[[], bool | None]]
        ] = {}
        self._free_x: torch.Tensor | None = None  # the free nodes' working states, one range
        # the free nodes' columns of x and their blocks of the working states (prepare/store)
        self._x_cols: list[torch.Tensor] = []
        self._x_blocks: list[torch.Tensor] = []
        self._target: tuple[torch.Tensor, torch.Tensor] | None = None
        # the free nodes' columns of x into the working states and back, bound with the views
        self._load: Step | None = None
        self._store: Callable[[], bool | None] | None = None
        self._views_buf: Buffers | None = None  # the buffers the cached views belong to
        self._grad_steps: dict[frozenset[int], list[Callable[[], bool | None]]] = {}
        self._consts: (
            tuple[list[Step], dict[int, torch.Tensor], dict[int, torch.Tensor | None]] | None
        ) = None

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
        for entry in self.err_plan:
            i = entry[0]
            kern = single.get(i)
            src = entry[1][0][1] if kern is not None else -1
            fn = None if kern is None else error_step(kern, sent[src], xv[i], ev[i])
            self.error_steps.append((i, fn, entry))
        self.gradient_steps = GradientSteps(self.grad_plan, xv, dv, gv, sent)
        self._sweeps = {}
        self._consts = None
        self._grad_steps = {}
        # new bindings (other buffers, new weight storage): the fixed parts are computed again
        self._const_token = None
        self._swept = frozenset()

    def _single_parent(self) -> dict[int, LinearKernel]:
        """The nodes whose prediction is bound as one product (:func:`error_step`,
        :func:`forward_step`). A fast path: while the fast paths are off (:mod:`pcgraph.fast`)
        none, and each node takes the general path it equals (:meth:`_error`,
        :meth:`_sweep_node`: the kernel's ``error_into``/``forward_into``)."""
        return self.single_parent if fast.enabled() else {}

    # --- buffers ---------------------------------------------------------------------------
    def buffers(self, batch_size: int) -> Buffers:
        """The reusable [B, D] buffers for this batch size."""
        return self._buffers.get_or_create(batch_size, lambda: self._new_buffers(batch_size))

    def _new_buffers(self, batch_size: int) -> Buffers:
        net = self.net

        def blocked() -> torch.Tensor:
            return torch.zeros(batch_size * net.state_size, device=net.device, dtype=net.dtype)

        eps = blocked()
        buf = Buffers(
            eps=eps,
            delta=eps if self.unit_precision else blocked(),
            grad=blocked(),
            sent_buf=blocked(),
            states=blocked(),
        )
        counts = torch.tensor([n.size * batch_size for n in net.nodes], device=net.device)
        if not self.unit_precision:
            w = torch.tensor([n.precision for n in net.nodes], device=net.device, dtype=net.dtype)
            buf.precision = torch.repeat_interleave(w, counts)
        if not self.per_node_energy:
            buf.node_of = torch.repeat_interleave(
                torch.arange(len(net.nodes), device=net.device), counts
            )
        return buf

    def node_block(self, t: torch.Tensor, i: int) -> torch.Tensor:
        """Node i's contiguous [B, *shape] block of a node-blocked buffer (ε, δ, σ, ∂E/∂x)."""
        node = self.net.nodes[i]
        b = t.numel() // self.net.state_size
        return t[b * node.offset : b * (node.offset + node.size)].view(b, *node.shape)

    def _block_range(self, t: torch.Tensor, a: int, b: int) -> torch.Tensor:
        """Columns [a, b) of a node-blocked buffer: the blocks of the nodes there, one range."""
        n = t.numel() // self.net.state_size
        return t[n * a : n * b]

    def as_states(self, t: torch.Tensor) -> torch.Tensor:
        """A node-blocked buffer (``buf.eps``, ``buf.grad``, ``buf.states``, …) as a new
        [B, D] tensor in the state's layout (for inspection and tests)."""
        b = t.numel() // self.net.state_size
        out = torch.empty(b, self.net.state_size, device=t.device, dtype=t.dtype)
        for i in range(len(self.net.nodes)):
            out[:, self.net.nodes[i].cols] = self.node_block(t, i).reshape(b, -1)
        return out

    def _view(self, t: torch.Tensor, i: int) -> torch.Tensor:
        node = self.net.nodes[i]
        v = t[:, node.cols]
        return v.view(t.shape[0], *node.shape) if len(node.shape) > 1 else v

    # --- the step ------------------------------------------------------------------------
    def _token(self, x: torch.Tensor, buf: Buffers) -> tuple[object, ...]:
        """Identifies x's contents and the weights: in-place writes bump ``_version``."""
        return (x.data_ptr(), x._version, id(buf), tuple(p._version for p in self._params))

    @torch.no_grad()
    def forward_sweep(self, x: torch.Tensor, order: list[int]) -> None:
        """Forward initialization x_i = μ_i for ``order`` (free nodes whose parents are clamped
        or earlier in the order), into the working states and then into x's columns.

        It reuses the fixed parts of μ that :meth:`prepare` computes, and it leaves σ(x_i) of
        the swept senders in the σ buffer and remembers that their errors are exactly 0: the
        inference that follows on the same, unmodified buffer recomputes neither.
        """
        buf = self._prepare(x, reuse_consts=False, load=False)
        steps, swept, write = self._sweep_plan(buf, order)
        for step in steps:
            step()
        finite = write()  # the swept states into x: whether they are all finite, if known
        self._const_token = self._token(x, buf)  # after the write into x
        # x_i = μ_i means ε_i = 0 only for finite values (NaN − NaN is NaN): after non-finite
        # data or weights nothing is taken as 0, so the energy monitor sees the NaN
        if finite is None:
            finite = self._finite(swept)
        self._swept = swept if finite else frozenset()

    def _sweep_plan(
        self, buf: Buffers, order: list[int]
    ) -> tuple[list[Step], frozenset[int], Callable[[], bool | None]]:
        """The forward sweep over ``order`` as a list of steps bound to the current views (a
        node whose only parent is one plain linear edge: one product straight into its
        states), with σ(x) of each sender computed once; cached per order until the views or
        the parameters' storage change. Also returns the swept nodes left at ε = 0 and the
        write of the nodes in ``order`` into x, which says whether they are all finite (None:
        not known)."""
        key = tuple(order)
        found = self._sweeps.get(key)
        if found is not None:
            return found
        xv, sent, edges = self._xv, self._sent_views, self.net.edges
        single = self._single_parent()
        sigma = self.sent_steps  # σ(x_j) into the σ buffer, per free sender
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
                copy_all([self._x_blocks[k] for k in kept], [self._x_cols[k] for k in kept])
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
            write_back([self._x_cols[k] for k in moved], [self._x_blocks[k] for k in moved])
            if moved
            else lambda: True
        )
        found = self._sweeps[key] = (steps, frozenset(swept), write)
        return found

    def _sweep_node(self, buf: Buffers, i: int) -> None:
        """x_i = μ_i in a forward sweep, the general path (fixed part, then each free parent's
        prediction, accumulated in x_i's view; a held node at its energy's mean)."""
        out, acc, edges = self._xv[i], False, self.net.edges
        c = buf.const[i]
        if c is not None:
            out.copy_(c)
            acc = True
        for e in self.var_parents[i]:
            self.kernel(e).forward_into(self._sent_views[edges[e].source], out, accumulate=acc)
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
        if self._free_x is not None:  # the free nodes' working states, bound with the views
            return math.isfinite(float(self._free_x.sum()))
        return all(math.isfinite(float(self._xv[i].sum())) for i in nodes)

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

    def swept_since_prepare(self, x: torch.Tensor, buf: Buffers) -> frozenset[int]:
        """Nodes the last :meth:`forward_sweep` left at ε = 0 with σ(x) computed, when x and
        the weights are unchanged since (empty otherwise)."""
        if self._const_token is not None and self._const_token == self._token(x, buf):
            return self._swept
        return frozenset()

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

    def _const_plan(
        self, x: torch.Tensor, buf: Buffers
    ) -> tuple[list[Step], dict[int, torch.Tensor], dict[int, torch.Tensor | None]]:
        """The fixed part of each μ as steps bound to the current views: σ(x_j) of the clamped
        senders (x_j's own columns where every product reads that view at full speed, else a
        copy per batch), then Σ f_ji(σ(x_j)) over the clamped parents into one buffer per
        node (a plain linear edge as one product). Built once per views and parameters."""
        edges, b = self.net.edges, x.shape[0]
        steps: list[Step] = []
        sent: dict[int, torch.Tensor] = {}
        for j in self.sent_clamped:
            view = self._view(x, j)
            act = self.net.nodes[j].activation
            if act.is_identity and self._reads_strided(j, view):
                sent[j] = view
                continue
            # contiguous: the products of every step and the weight gradient read it, and
            # oneDNN would copy a strided view (a node's columns of x) at each of them
            sent[j] = self._stored(buf, ("sent", j), view.shape, x)
            steps.append(copier(view, sent[j]) if act.is_identity else act.into_step(view, sent[j]))
        const: dict[int, torch.Tensor | None] = {}
        for i in self.predicted:
            parents = self.const_parents[i]
            if not parents:
                const[i] = None
                continue
            out = self._stored(buf, ("const", i), (b, *self.net.nodes[i].shape), x)
            for k, e in enumerate(parents):
                kern, src = self.kernel(e), sent[edges[e].source]
                # bound product: a fast path equal to the kernel's forward_into (the reference)
                if k == 0 and isinstance(kern, LinearKernel) and kern.plain and fast.enabled():
                    steps.append(forward_step(kern, src, out))
                else:
                    steps.append(functools.partial(kern.forward_into, src, out, accumulate=k > 0))
            const[i] = out
        return steps, sent, const

    @staticmethod
    def _stored(
        buf: Buffers, key: tuple[str, int], shape: tuple[int, ...] | torch.Size, x: torch.Tensor
    ) -> torch.Tensor:
        """A tensor kept with the buffers (the same memory each time the fixed parts are bound
        to them again: a captured CUDA graph that writes it stays valid)."""
        t = buf.store.get(key)
        if t is None or t.shape != shape or t.dtype != x.dtype or t.device != x.device:
            t = buf.store[key] = torch.empty(shape, device=x.device, dtype=x.dtype)
        return t

    def _reads_strided(self, j: int, view: torch.Tensor) -> bool:
        """Whether every product on clamped sender j's σ(x) reads its strided view of x at
        full speed (see :meth:`EdgeKernel.reads_strided`)."""
        edges = self.clamped_out[j]
        return (
            bool(edges)
            and not self.stacked_edges.intersection(edges)
            and all(e < len(self.net.kernels) and self.kernel(e).reads_strided(view) for e in edges)
        )

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
        for i, fn, entry in self.error_steps:
            if i in skip:  # swept: ε = 0 exactly (a CE node is never in skip)
                if i not in was_zero:
                    ev[i].zero_()
            elif fn is not None:
                fn()
            else:
                self._error(buf, sent, *entry)  # type: ignore[arg-type]
        if buf.precision is not None:
            torch.mul(buf.eps, buf.precision, out=buf.delta)
        return sent

    def _error(
        self,
        buf: Buffers,
        sent: Sent,
        i: int,
        var: list[tuple[EdgeKernel, int]],
        custom: bool,
        stacked_in: bool,
    ) -> None:
        """ε_i = x_i − μ_i, the general path: μ accumulated edge by edge in ε_i's block."""
        xv, ev, const = self._xv, self._ev, buf.const
        if custom:  # not gaussian: μ, then ε asked of the node's Energy
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

    @without_grad
    def node_energies(
        self, buf: Buffers, out: torch.Tensor | None = None, *, zero: frozenset[int] = frozenset()
    ) -> torch.Tensor:
        """Per-node energies [N] from the current errors (gaussian: ½ w Σ ε²).

        Args:
            zero: nodes known to be at ε = 0 (swept by forward init): their energy is 0 and is
                not recomputed, so the energy at t = 0 after a forward sweep costs one norm per
                node that carries error (the clamped output), not one per node.
        """
        n = len(self.net.nodes)
        skip = zero | buf.quiet if buf.quiet else zero
        gauss, index, half_w = self.gauss_plan(skip)
        fast = self._energy_step(buf, skip, gauss)
        energies = torch.empty(n, device=buf.eps.device, dtype=buf.eps.dtype)
        if fast is not None and fast(energies):
            pass  # one native call wrote all N (0 for the nodes outside gauss)
        elif not gauss:
            energies.zero_()
        elif self.per_node_energy:  # few nodes: one norm per node, skipping clamped columns
            norms = torch.stack([torch.linalg.vector_norm(self._ev[i]) for i in gauss])
            energies.zero_().index_copy_(0, index, norms.square_().mul_(half_w))
        else:  # many nodes: squares, then a segment sum per node
            sq = buf.eps * buf.eps
            if buf.precision is not None:
                sq.mul_(buf.precision)
            assert buf.node_of is not None
            energies.zero_().index_add_(0, buf.node_of.reshape(-1), sq.reshape(-1), alpha=0.5)
        for i in self.custom_nodes:  # from the μ errors() kept, asked of the Energy object
            energies[i] = self.energy_of[i].value(
                self._xv[i], buf.ce_mu[i], self.net.nodes[i].precision
            )
        if out is not None:
            out.copy_(energies)
            return out
        return energies

    def _energy_step(
        self, buf: Buffers, skip: frozenset[int], gauss: list[int]
    ) -> native.BoundEnergy | None:
        """The gaussian energies of ``gauss`` (all but ``skip``) as one native call on
        ``buf.eps`` (None: not node-blocked, not float32 on the CPU, inside a trace, no native
        library, the fast paths off). A fast path; its reference is the norms or segment sums
        of :meth:`node_energies`."""
        if not self.node_blocked or not fast.enabled() or torch.compiler.is_compiling():
            return None  # (nothing bound inside a trace: ctypes arrays break the graph)
        key = (skip, id(buf.eps))  # the bound call keeps buf.eps alive: the id stays its own
        if key in self._energy_steps:
            return self._energy_steps[key]
        b = buf.eps.numel() // self.net.state_size
        nodes, listed = self.net.nodes, set(gauss)
        # every node gets a block, so that all N entries are written: an empty one (E = 0)
        # for the nodes outside ``gauss``
        blocks = [
            (b * n.offset, b * n.size if n.index in listed else 0, 0.5 * n.precision, n.index)
            for n in nodes
        ]
        if len(self._energy_steps) >= 16:  # a few zero sets × the buffers in use
            self._energy_steps.clear()
        found = self._energy_steps[key] = native.bind_block_energy(buf.eps, blocks)
        return found

    def param_grads(self, x: torch.Tensor, buf: Buffers, *, accumulate: bool = True) -> None:
        """∂E/∂θ at the current errors into ``.grad`` of every parameter: added to it, or, with
        ``accumulate=False``, written over it (in place where a ``.grad`` exists, so that
        learning allocates nothing per update)."""
        if buf is not self._views_buf:  # another batch size's buffers: their views first
            self.prepare(x, reuse_consts=True)
            if buf is not self._views_buf:
                raise ConfigError(
                    "param_grads needs the buffers that prepare() returned for these states "
                    f"(batch {x.shape[0]}); pass the InferenceResult's own states and buffers"
                )
        # bound gradient steps: a fast path equal to _general_param_grads (the reference)
        if not accumulate and not self.stacks and fast.enabled() and self._bound_param_grads(buf):
            return
        with torch.no_grad():
            for st in self.stacks:
                st.param_grads(buf.sent_free | buf.sent, self._dv, accumulate=accumulate)
            unstacked = [e for e in self.learnable_edges if e not in self.stacked_edges]
            self._general_param_grads(buf, unstacked, accumulate=accumulate)

    def _zero_grads(self, e: int) -> None:
        for p in self.kernel(e).parameters():
            if p.grad is not None and p.grad.shape == p.shape:
                p.grad.zero_()
            else:
                p.grad = torch.zeros_like(p)

    def _bound_param_grads(self, buf: Buffers) -> bool:
        """``param_grads(accumulate=False)`` as steps bound to the current views and ``.grad``
        tensors, cached per quiet set: a plain linear edge's gradient is one product straight
        into ``.grad``. False (nothing written) when some parameter has no ``.grad`` of its
        shape yet, or one was replaced since the steps were bound: the general path then runs
        (and the steps are bound again on the next call)."""
        steps = self._grad_steps.get(buf.quiet)
        if steps is None:
            if any(p.grad is None or p.grad.shape != p.shape for p in self._params):
                return False
            edges, sent = self.net.edges, buf.sent_free | buf.sent
            steps = []
            with torch.no_grad():  # the library choice is made for products outside autograd
                for e in self.learnable_edges:
                    target = edges[e].target
                    kern = self.kernel(e)
                    if target in buf.quiet:  # δ = 0: the gradient is exactly 0
                        steps.append(zero_grads_step(list(kern.parameters())))
                        continue
                    s, d = sent[edges[e].source], self._dv[target]
                    bound = param_grad_step(kern, s, d) if isinstance(kern, LinearKernel) else None
                    general = functools.partial(kern.set_param_grads, s, d, accumulate=False)
                    steps.append(bound or general)
            self._grad_steps[buf.quiet] = steps
        with torch.no_grad():
            for k, step in enumerate(steps):
                if step() is False:  # a .grad was replaced (zero_grad(set_to_none=True), …):
                    self._grad_steps.clear()  # this edge and the rest by the general path
                    self._general_param_grads(buf, self.learnable_edges[k:], accumulate=False)
                    break
        return True

    def _general_param_grads(self, buf: Buffers, learnable: list[int], *, accumulate: bool) -> None:
        """Edge by edge through the kernels: σ(x) at the states of the last errors() call; an
        edge into a node at δ = 0 has a zero gradient (nothing added, or zeros written)."""
        edges, sent = self.net.edges, buf.sent_free | buf.sent
        for e in learnable:
            if edges[e].target in buf.quiet:
                if not accumulate:
                    self._zero_grads(e)
            else:
                self.kernel(e).set_param_grads(
                    sent[edges[e].source], self._dv[edges[e].target], accumulate=accumulate
                )
