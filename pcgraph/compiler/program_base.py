"""The state of a bound inference program (:class:`ProgramBase`): its buffers per batch size,
the views and bound steps over them, and the fixed part of each prediction (the clamped
parents' contributions, computed once per batch). :mod:`pcgraph.compiler.program` runs the
step on it; :mod:`~pcgraph.compiler.program_sweep` and :mod:`~pcgraph.compiler.program_readout`
add the forward sweep and what is read from the final errors."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from pcgraph import fast
from pcgraph.cache import BoundedCache
from pcgraph.compiler.gradient import GradientSteps
from pcgraph.compiler.network import PCNetwork
from pcgraph.compiler.protocol import Buffers
from pcgraph.compiler.recipes import ErrorRecipe
from pcgraph.compiler.step_plan import StepPlan
from pcgraph.compiler.steps import (
    Step,
    copier,
    forward_step,
)
from pcgraph.ops import native
from pcgraph.ops.linear_kernel import LinearKernel

__all__ = ["ProgramBase"]


class ProgramBase(StepPlan):
    """The buffers, views, caches and fixed parts of an :class:`InferenceProgram` (see there)."""

    # per-node views of the current buffers, bound by prepare(): states (the free nodes' are
    # blocks of the working states), ε, δ, ∂E/∂x, and σ(x) of each sender
    _xv: list[torch.Tensor]
    _ev: list[torch.Tensor]
    _dv: list[torch.Tensor]
    _gv: list[torch.Tensor]
    _sent_views: dict[int, torch.Tensor]

    node_blocked = True  # ε, δ, σ(x) node-blocked (see Buffers): per-node energies by blocks

    def __init__(self, net: PCNetwork, clamp: frozenset[str]) -> None:
        super().__init__(net, clamp)
        self._buffers: BoundedCache[int, Buffers] = BoundedCache(4)  # per batch size
        self._views_key: tuple[object, ...] | None = None
        self._const_token: tuple[object, ...] | None = None
        self._swept: frozenset[int] = frozenset()
        self._steps_key: tuple[int, ...] | None = None
        self._params = list(net.parameters())  # the same objects for the network's life
        self.error_steps: list[tuple[ErrorRecipe, Step | None]] = []
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

    def prepare(self, x: torch.Tensor, *, reuse_consts: bool = False) -> Buffers:
        raise NotImplementedError  # InferenceProgram

    def _prepare(self, x: torch.Tensor, *, reuse_consts: bool, load: bool) -> Buffers:
        raise NotImplementedError  # InferenceProgram
