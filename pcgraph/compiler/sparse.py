"""Neuron-level graphs compile to sparse message passing over an ``edge_index``.

A graph of many tiny groups (single neurons, small clusters) with sparse wiring becomes one sparse
weight matrix W over the flat state (rows: target neurons, columns: source neurons), stored as
``edge_index`` [2, nnz] and a value vector [nnz]; memory grows with the number of edges, never
with N². Predictions are μ = σ(x) Wᵀ + b and error messages δ W, both sparse-dense products;
weight gradients ∂E/∂W_e = −Σ_batch δ[:, row_e] σ(x)[:, col_e] are gathered per edge.

Supported: ``linear`` edges between gaussian nodes of any sizes. Each target neuron has one bias
(the sum of its incoming edges' biases in the dense form). Weights follow torch's default
initialization with the target's total fan-in: U(−1/√fan_in, 1/√fan_in).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterable

import torch
from torch import nn

from pcgraph.cache import BoundedCache
from pcgraph.compiler import sparse_mp
from pcgraph.compiler.bound import Sweep
from pcgraph.compiler.network import PCNetwork
from pcgraph.compiler.protocol import Buffers, Quiet, Sent
from pcgraph.compiler.step_plan import StepPlan
from pcgraph.errors import SpecError
from pcgraph.ops.kernel import EdgeKernel, store_grad
from pcgraph.schema import GraphSpec

__all__ = ["SparsePCNetwork", "SparseProgram", "sparse_unsupported_reason"]


def _coalesce(
    edge_index: torch.Tensor, values: torch.Tensor, num_nodes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch_geometric.utils.coalesce``: the entries sorted by (row, column), duplicates
    summed. torch_geometric is imported here, by the one backend that needs it, so that every
    other ``compile`` (and the CLI) starts without it; the deprecation warnings of its import
    (``torch.jit.script``, …), which concern its own code, are not shown."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        from torch_geometric.utils import coalesce

    found: tuple[torch.Tensor, torch.Tensor] = coalesce(edge_index, values, num_nodes=num_nodes)
    return found


def sparse_unsupported_reason(spec: GraphSpec) -> str | None:
    """Why ``spec`` cannot use the sparse backend, or None when it can."""
    for edge in spec.edges:
        if edge.op != "linear":
            return f"edge {edge.label} uses op {edge.op!r}; the sparse backend supports linear only"
    for node in spec.nodes:
        if node.prior is not None:
            return f"node {node.name!r} has a prior; the sparse backend has none"
        if node.precision == "learnable":
            return f"node {node.name!r} learns its precision; the sparse backend cannot"
        if node.energy != "gaussian":
            return f"node {node.name!r} uses {node.energy} energy; the sparse backend is gaussian"
    return None


class SparsePCNetwork(PCNetwork):
    """A :class:`PCNetwork` whose edges are one sparse matrix (see the module docstring).

    Attributes:
        edge_index: [2, nnz] (target neuron, source neuron) column indices of the flat state.
        weight: [nnz] learnable values; ``bias``: [D] (zero and unused for nodes without parents).
    """

    backend = "sparse"

    edge_index: torch.Tensor
    edge_block: torch.Tensor
    bias_mask: torch.Tensor
    weight: nn.Parameter
    bias: nn.Parameter

    @classmethod
    def unsupported_reason(cls, spec: GraphSpec) -> str | None:
        return sparse_unsupported_reason(spec)

    def _build_parameters(
        self, spec: GraphSpec, modules: dict[tuple[str, str], nn.Module]
    ) -> list[EdgeKernel]:
        """One weight vector over all edges' entries (COO order) and one bias vector; no
        per-edge kernels (and so no edge modules: ``unsupported_reason`` refuses op: module)."""
        sizes = [n.size for n in spec.nodes]
        offsets = [0, *itertools.accumulate(sizes)]
        index = {n.name: i for i, n in enumerate(spec.nodes)}
        rows, cols, block_of = [], [], []
        fan_in = [0] * len(sizes)
        for k, edge in enumerate(spec.edges):
            s, t = index[edge.source], index[edge.target]
            r = torch.arange(offsets[t], offsets[t] + sizes[t]).repeat_interleave(sizes[s])
            c = torch.arange(offsets[s], offsets[s] + sizes[s]).repeat(sizes[t])
            rows.append(r)
            cols.append(c)
            block_of.append(torch.full((r.numel(),), k))
            fan_in[t] += sizes[s]
        total = offsets[-1]
        if rows:
            ei = torch.stack([torch.cat(rows), torch.cat(cols)])
            ei, order = _coalesce(ei, torch.cat(block_of), total)
        else:
            ei, order = torch.zeros(2, 0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
        bound_col = torch.zeros(total, dtype=torch.float64)
        for i, n in enumerate(sizes):
            bound_col[offsets[i] : offsets[i] + n] = (
                1.0 / math.sqrt(fan_in[i]) if fan_in[i] else 0.0
            )
        bound = bound_col[ei[0]].to(self.dtype)
        self.register_buffer("edge_index", ei)
        self.register_buffer("edge_block", order)
        self.weight = nn.Parameter((torch.rand(ei.shape[1], dtype=self.dtype) * 2 - 1) * bound)
        has_bias = torch.zeros(total, dtype=torch.bool)
        for edge in spec.edges:
            if edge.bias:
                t = index[edge.target]
                has_bias[offsets[t] : offsets[t] + sizes[t]] = True
        self.register_buffer("bias_mask", has_bias.to(self.dtype))
        b = (torch.rand(total, dtype=self.dtype) * 2 - 1) * bound_col.to(self.dtype)
        self.bias = nn.Parameter(b * self.bias_mask)
        self._act_groups: list[tuple[object, torch.Tensor]] = []
        return []

    # --- sparse algebra --------------------------------------------------------------------
    def matrix(self, *, transpose: bool = False) -> torch.Tensor:
        """W (or Wᵀ) as a sparse COO tensor [D, D] built from the current values."""
        ei = self.edge_index.flip(0) if transpose else self.edge_index
        size = (self.state_size, self.state_size)
        values = self.weight if torch.is_grad_enabled() else self.weight.detach()
        return torch.sparse_coo_tensor(
            ei, values, size, is_coalesced=not transpose, check_invariants=False
        )

    def sent_all(self, x: torch.Tensor) -> torch.Tensor:
        """σ(x) for every column, [B, D] (one call per distinct activation)."""
        out = x.clone()
        for act, cols in self._activation_groups():
            out[:, cols] = act.fn(x[:, cols])  # type: ignore[attr-defined]
        return out

    def derivative_all(self, x: torch.Tensor) -> torch.Tensor:
        """σ'(x) for every column, [B, D]."""
        out = torch.ones_like(x)
        for act, cols in self._activation_groups():
            out[:, cols] = act.derivative(x[:, cols])  # type: ignore[attr-defined]
        return out

    def _activation_groups(self) -> list[tuple[object, torch.Tensor]]:
        if not self._act_groups:
            groups: dict[str, list[int]] = {}
            acts = {}
            for n in self.nodes:
                if not n.activation.is_identity:
                    groups.setdefault(n.activation.name, []).extend(
                        range(n.offset, n.offset + n.size)
                    )
                    acts[n.activation.name] = n.activation
            self._act_groups = [
                (acts[k], torch.tensor(v, device=self.device)) for k, v in groups.items()
            ]
        return self._act_groups

    def predictions_all(self, x: torch.Tensor) -> torch.Tensor:
        """μ for every column, [B, D] (meaningless for columns of nodes without parents)."""
        s = self.sent_all(x)
        return torch.sparse.mm(self.matrix(), s.t()).t() + self.bias * self.bias_mask

    # --- reference math, overriding the per-edge forms -------------------------------------
    def prediction(self, x: torch.Tensor, i: int) -> torch.Tensor:
        node = self.nodes[i]
        if not node.parents:
            raise SpecError(f"node {node.name!r} has no parents, so it has no prediction")
        return self.predictions_all(x)[:, node.cols].reshape(x.shape[0], *node.shape)

    def node_energies(self, x: torch.Tensor) -> torch.Tensor:
        eps = (x - self.predictions_all(x)) * self.predicted_mask_all()
        col = (eps * eps).sum(0) * self._precision()
        index = torch.cat([torch.full((n.size,), n.index, device=x.device) for n in self.nodes])
        return torch.zeros(len(self.nodes), device=x.device, dtype=x.dtype).index_add(
            0, index, col, alpha=0.5
        )

    def forward_sweep(self, x: torch.Tensor, order: Iterable[int]) -> None:
        """Forward init level by level: one sparse product per group of independent nodes."""
        pending = list(order)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Ss]parse CSR tensor support.*")
            w = self.matrix().to_sparse_csr()  # the same product as the inference program
            while pending:
                group: list[int] = []
                in_group: set[int] = set()
                for i in pending:
                    if any(self.edges[e].source in in_group for e in self.nodes[i].parents):
                        break
                    group.append(i)
                    in_group.add(i)
                mu = torch.sparse.mm(w, self.sent_all(x).t()).t() + self.bias * self.bias_mask
                for i in group:
                    x[:, self.nodes[i].cols] = mu[:, self.nodes[i].cols]
                pending = pending[len(group) :]

    def predicted_mask_all(self) -> torch.Tensor:
        """1 on the columns of nodes that have parents (the ones with an energy)."""
        mask = torch.zeros(self.state_size, device=self.device, dtype=self.dtype)
        for n in self.nodes:
            if n.parents:
                mask[n.cols] = 1.0
        return mask

    def _precision(self) -> torch.Tensor:
        w = torch.ones(self.state_size, device=self.device, dtype=self.dtype)
        for n in self.nodes:
            w[n.cols] = n.precision
        return w


class SparseProgram(StepPlan):
    """The inference step of a :class:`SparsePCNetwork`: two sparse products per step, on
    flat [B, D] buffers in the state's layout (it implements
    :class:`~pcgraph.compiler.protocol.Program` by itself; of the dense program it shares only
    the static :class:`StepPlan`: free nodes, masks, precisions)."""

    net: SparsePCNetwork

    def __init__(self, net: SparsePCNetwork, clamp: frozenset[str]) -> None:
        super().__init__(net, clamp)
        self.predicted_mask = net.predicted_mask_all()
        self._buffers: BoundedCache[int, Buffers] = BoundedCache(4)  # per batch size
        self._w: torch.Tensor | None = None  # W and Wᵀ as CSR, converted once per batch
        self._wt: torch.Tensor | None = None

    def buffers(self, batch_size: int) -> Buffers:
        """The reusable [B, D] buffers for this batch size."""
        return self._buffers.get_or_create(batch_size, lambda: self._new_buffers(batch_size))

    def swept(self, x: torch.Tensor, buf: Buffers, sweep: Sweep | None) -> frozenset[int]:
        """None: the sparse step computes every error each step (a front saves nothing)."""
        return frozenset()

    def bound_state(self) -> object:
        return (self._w, self._wt)

    @torch.no_grad()
    def node_energies(
        self, buf: Buffers, out: torch.Tensor | None = None, *, zero: frozenset[int] = frozenset()
    ) -> torch.Tensor:
        """Per-node energies ½ w Σ ε² [N] by a segment sum over the columns (every node is
        gaussian here; ``zero`` changes nothing: their ε is 0 in the buffer)."""
        sq = buf.eps * buf.eps
        if buf.precision is not None:
            sq.mul_(buf.precision)
        assert buf.node_of is not None
        energies = torch.zeros(len(self.net.nodes), device=sq.device, dtype=sq.dtype)
        energies.index_add_(0, buf.node_of.reshape(-1), sq.reshape(-1), alpha=0.5)
        if out is not None:
            out.copy_(energies)
            return out
        return energies

    def _new_buffers(self, batch_size: int) -> Buffers:
        """Flat [B, D] buffers: the sparse products work on the whole state at once."""
        net = self.net
        eps = net.new_states(batch_size)
        buf = Buffers(
            eps=eps,
            delta=eps if self.unit_precision else net.new_states(batch_size),
            grad=net.new_states(batch_size),
        )
        buf.node_of = self.col_node.expand(batch_size, -1)
        if not self.unit_precision:
            buf.precision = self.precision
        return buf

    def forward_sweep(self, x: torch.Tensor, order: list[int]) -> Sweep | None:
        self.net.forward_sweep(x, order)  # level by level, one sparse product per level
        return None  # nothing to reuse: prepare converts W once per batch either way

    def prepare(self, x: torch.Tensor, *, sweep: Sweep | None = None) -> Buffers:
        buf = self.buffers(x.shape[0])
        buf.grad.zero_()
        buf.eps.zero_()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Ss]parse CSR tensor support.*")
            # CSR products are several times faster than COO ones on the CPU
            self._w = self.net.matrix().to_sparse_csr()
            self._wt = self.net.matrix(transpose=True).coalesce().to_sparse_csr()
        return buf

    @torch.no_grad()
    def errors(self, x: torch.Tensor, buf: Buffers, quiet: Quiet | None = None) -> Sent:
        # one product over the whole graph: a front of zero errors saves nothing here
        s = self.net.sent_all(x)
        mu = sparse_mp.predictions(self._operands(), s)
        # targets without a biased in-edge have no bias: the mask keeps autograd's view equal
        torch.sub(x, mu.add_(self.net.bias * self.net.bias_mask), out=buf.eps)
        buf.eps.mul_(self.predicted_mask)
        if not self.unit_precision:
            torch.mul(buf.eps, self.precision, out=buf.delta)
        return {-1: s}

    @torch.no_grad()
    def state_grad(
        self, x: torch.Tensor, buf: Buffers, sent: Sent, *, sgd_lr: float | None = None
    ) -> None:
        # every column at once (the free mask zeroes the rest): nothing is skipped
        msg = sparse_mp.messages(self._operands(), buf.delta).mul_(self.net.derivative_all(x))
        torch.sub(buf.delta, msg, out=buf.grad)
        buf.grad.mul_(self.free_mask)

    def update_parts(
        self, x: torch.Tensor, buf: Buffers, *, sgd_lr: float | None = None
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [self.step_target(x, buf)]

    def store(self, x: torch.Tensor, buf: Buffers) -> None:
        """Nothing to write back: the sparse steps move x itself."""

    def step_target(self, x: torch.Tensor, buf: Buffers) -> tuple[torch.Tensor, torch.Tensor]:
        """x and ∂E/∂x on the free columns (all columns where they are not one range)."""
        span = self.free_range
        if span is None:
            return x, buf.grad
        return x[:, span[0] : span[1]], buf.grad[:, span[0] : span[1]]

    def set_state_grad(self, buf: Buffers, g: torch.Tensor) -> None:
        torch.mul(g, self.free_mask, out=buf.grad)

    def as_states(self, t: torch.Tensor) -> torch.Tensor:
        """The sparse buffers are in the state's [B, D] layout already: a copy."""
        return t.clone()

    def param_grads(self, x: torch.Tensor, buf: Buffers, *, accumulate: bool = True) -> None:
        with torch.no_grad():
            s = self.net.sent_all(x)
            gw = sparse_mp.weight_grad(self._operands(), buf.delta, s)
            gb = -buf.delta.sum(0) * self.net.bias_mask
        for p, g in ((self.net.weight, gw), (self.net.bias, gb)):
            store_grad(p, g, accumulate=accumulate)

    def _operands(self) -> sparse_mp.SparseOperands:
        """W as the products read it (the CSR forms built by :meth:`prepare`)."""
        assert self._w is not None and self._wt is not None, "prepare() first"
        return sparse_mp.SparseOperands(self.net.edge_index, self._w, self._wt)
