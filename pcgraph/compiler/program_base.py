"""The state of a bound inference program (:class:`ProgramBase`): its buffers per batch size,
the views and bound steps over them, and the fixed part of each prediction (the clamped
parents' contributions, computed once per batch). :mod:`pcgraph.compiler.program` runs the
step on it; :mod:`~pcgraph.compiler.program_sweep` and :mod:`~pcgraph.compiler.program_readout`
add the forward sweep and what is read from the final errors."""

from __future__ import annotations

import functools

import torch

from pcgraph import fast
from pcgraph.cache import BoundedCache
from pcgraph.compiler.bound import BoundProgram, FixedParts, Sweep
from pcgraph.compiler.gradient import GradientSteps
from pcgraph.compiler.network import PCNetwork
from pcgraph.compiler.protocol import Buffers
from pcgraph.compiler.recipes import ErrorRecipe
from pcgraph.compiler.step_plan import StepPlan
from pcgraph.compiler.steps import (
    Step,
    copier,
    copy_all,
    error_step,
    forward_step,
    write_back,
)
from pcgraph.ops.linear_kernel import LinearKernel

__all__ = ["ProgramBase"]


def _fill_exp(block: torch.Tensor, log_w: torch.Tensor) -> None:
    block.fill_(log_w.detach().exp())


class ProgramBase(StepPlan):
    """The buffers of an :class:`InferenceProgram` per batch size, its binding to them
    (:meth:`bind`) and the fixed part of each prediction (see :class:`InferenceProgram`)."""

    node_blocked = True  # ε, δ, σ(x) node-blocked (see Buffers): per-node energies by blocks

    def __init__(self, net: PCNetwork, clamp: frozenset[str]) -> None:
        super().__init__(net, clamp)
        self._buffers: BoundedCache[int, Buffers] = BoundedCache(4)  # per batch size
        self._params = list(net.parameters())  # the same objects for the network's life
        # the program bound to the operands of the last prepare() (see bind)
        self._bound: BoundProgram | None = None

    @property
    def bound(self) -> BoundProgram:
        """The program bound by the last :meth:`prepare`."""
        assert self._bound is not None, "prepare() binds the program first"
        return self._bound

    def _single_parent(self) -> dict[int, LinearKernel]:
        """The nodes whose prediction is bound as one product (:func:`error_step`,
        :func:`forward_step`). A fast path: while the fast paths are off (:mod:`pcgraph.fast`)
        none, and each node takes the general path it equals (:meth:`_error`,
        :meth:`_sweep_node`: the kernel's ``error_into``/``forward_into``)."""
        return self.single_parent if fast.enabled() else {}

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

    def _const_plan(self, x: torch.Tensor, buf: Buffers) -> FixedParts:
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
        for i in self.learned:  # w_i = exp(s_i) into its block of the precisions, per batch
            node = self.net.nodes[i]
            assert buf.precision is not None  # not unit precision
            block = self._block_range(buf.precision, node.offset, node.offset + node.size)
            steps.append(functools.partial(_fill_exp, block, self.net.log_precision[f"n{i}"]))
        const: dict[int, torch.Tensor | None] = {}
        for i in self.predicted:
            parents = self.const_parents[i]
            mean = self.net.nodes[i].prior_mean
            if mean is not None:  # a root's prior: the fixed prediction μ = m
                const[i] = self._stored(buf, ("const", i), (b, *self.net.nodes[i].shape), x)
                const[i].fill_(mean)  # type: ignore[union-attr]
                continue
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
        return FixedParts(steps, sent, const)

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

    def binding_key(self, x: torch.Tensor, buf: Buffers) -> tuple[object, ...]:
        """The operands a bound program depends on: x's storage and layout, the buffers, the
        switch of the fast paths (each bound step is one of its values), and the parameters'
        storage (the bound steps hold it: ``p.data = …`` binds again; in-place updates, as
        optimizers and ``load_state_dict`` make, are seen as they are)."""
        weights = tuple(p.data_ptr() for p in self.bound_params)
        return (x.data_ptr(), tuple(x.shape), x.stride(), id(buf), fast.enabled(), weights)

    @torch.no_grad()  # the library choices are made for products outside autograd
    def bind(
        self, x: torch.Tensor, buf: Buffers, key: tuple[object, ...] | None = None
    ) -> BoundProgram:
        """A new :class:`BoundProgram` over these operands: the per-node views of the buffers
        (the free nodes' states are their contiguous blocks of the working states, not x's
        columns) and the step closures of :mod:`pcgraph.compiler.steps` bound to them; every
        other node keeps the general path (None)."""
        n = range(len(self.net.nodes))
        assert buf.sent_buf is not None and buf.states is not None
        x_cols = [self._view(x, i) for i in self.free_nodes]
        x_blocks = [self.node_block(buf.states, i) for i in self.free_nodes]
        blocks = dict(zip(self.free_nodes, x_blocks, strict=True))
        xv = [blocks[i] if i in blocks else self._view(x, i) for i in n]
        ev = [self.node_block(buf.eps, i) for i in n]
        dv = [self.node_block(buf.delta, i) for i in n]
        gv = [self.node_block(buf.grad, i) for i in n]
        sv = [self.node_block(buf.sent_buf, i) for i in n]
        sent = {j: xv[j] if self.net.nodes[j].activation.is_identity else sv[j] for j in n}
        buf.sent_free = {j: sent[j] for j in self.sent_free}
        span = self.free_range
        free_x = None if span is None else self._block_range(buf.states, *span)
        target = (
            (buf.states, buf.grad)
            if span is None or free_x is None
            else (free_x, self._block_range(buf.grad, *span))
        )
        single = self._single_parent()
        error_steps: list[tuple[ErrorRecipe, Step | None]] = []
        for recipe in self.err_plan:
            i = recipe.node
            kern = single.get(i)
            src = recipe.parents[0][1] if kern is not None else -1
            fn = None if kern is None else error_step(kern, sent[src], xv[i], ev[i])
            error_steps.append((recipe, fn))
        smu = smsg = None
        if self.stacks:
            if buf.stacked_mu is None or buf.stacked_mu.shape != x.shape:
                buf.stacked_mu = torch.zeros_like(x)
                buf.stacked_msg = torch.zeros_like(x)
            assert buf.stacked_msg is not None
            smu = [self._view(buf.stacked_mu, i) for i in n]
            smsg = [self._view(buf.stacked_msg, i) for i in n]
        return BoundProgram(
            key=self.binding_key(x, buf) if key is None else key,
            buf=buf,
            x_ptr=x.data_ptr(),
            xv=xv,
            ev=ev,
            dv=dv,
            gv=gv,
            sent_views=sent,
            x_cols=x_cols,
            x_blocks=x_blocks,
            free_x=free_x,
            target=target,
            load=copy_all(x_blocks, x_cols) if x_cols else None,
            store=write_back(x_cols, x_blocks) if x_cols else None,
            # σ(x_j) into the σ buffer per free sender, its kernel bound to these views
            sent_steps={
                j: act.into_step(xv[j], sent[j]) for j, act in self.sent_plan if act is not None
            },
            error_steps=error_steps,
            gradient_steps=GradientSteps(self.grad_plan, xv, dv, gv, sent),
            smu=smu,
            smsg=smsg,
        )

    def prepare(self, x: torch.Tensor, *, sweep: Sweep | None = None) -> Buffers:
        raise NotImplementedError  # InferenceProgram

    def _prepare(self, x: torch.Tensor, *, sweep: Sweep | None, load: bool) -> Buffers:
        raise NotImplementedError  # InferenceProgram
