"""The execution plan of inference for one clamp set: what runs each step, with reused buffers.

Built once per (network, clamp set) and cached; per batch size it keeps its [B, D] buffers, so
the inference loop does no graph analysis and allocates no state tensors. One step computes

    μ_i = Σ_j f_ji(σ_j(x_j)),  ε_i = x_i − μ_i,  δ_i = −∂E/∂μ_i,
    ∂E/∂x_j = own_j − σ_j'(x_j) ⊙ Σ_{i ∈ children(j)} J_{f_ji}ᵀ δ_i

for the free nodes only. Contributions of edges whose source is clamped do not change during
inference and are computed once per batch; messages are sent only to free sources.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch

from pcgraph.compiler.network import PCNetwork
from pcgraph.ops import EdgeKernel
from pcgraph.ops.linear import LinearKernel

__all__ = ["STACK_MIN", "InferenceProgram", "program_for"]

# Linear edges of one signature are stacked into one batched matmul when there are at least this
# many: below it, separate matmuls cost the same and avoid the gather/scatter copies.
STACK_MIN = 4


@dataclass
class _Buffers:
    eps: torch.Tensor  # [B, D] prediction errors ε (0 for nodes without parents)
    delta: torch.Tensor  # [B, D] error signals δ = w ε (the same tensor when all w = 1)
    grad: torch.Tensor  # [B, D] ∂E/∂x, written on free columns only (clamped stay 0)
    const: dict[int, torch.Tensor | None] = field(default_factory=dict)  # fixed part of μ_i
    sent: dict[int, torch.Tensor] = field(default_factory=dict)  # σ(x_j) of clamped sources
    sent_free: dict[int, torch.Tensor] = field(default_factory=dict)  # σ(x_j), free senders
    ce_mu: dict[int, torch.Tensor] = field(default_factory=dict)  # μ of CE nodes (energies)
    stacked_mu: torch.Tensor | None = None  # [B, D] predictions of stacked edges
    stacked_msg: torch.Tensor | None = None  # [B, D] messages of stacked edges


@dataclass
class _EdgeStack:
    """Linear edges of one signature (in, out, bias) with free sources, run as one bmm.

    μ-contributions are scattered into a [B, D] buffer with one ``index_add_`` (targets' columns),
    messages likewise (sources' columns), so a group costs O(1) kernels instead of O(edges).
    """

    edges: list[int]
    kernels: list[LinearKernel]
    sources: list[int]
    targets: list[int]
    src_cols: torch.Tensor  # [G·in] flat-state columns of the sources, in group order
    tgt_cols: torch.Tensor  # [G·out]
    weight: torch.Tensor | None = None  # [G, out, in], restacked once per batch
    bias: torch.Tensor | None = None  # [G, 1, out]


class InferenceProgram:
    """Precomputed plan of the local-gradient inference step for one clamp set."""

    def __init__(self, net: PCNetwork, clamp: frozenset[str]) -> None:
        self.net = net
        self.clamp = clamp
        nodes = net.nodes
        is_free = [n.name not in clamp for n in nodes]
        self.free_nodes = [n.index for n in nodes if is_free[n.index]]
        self.predicted = [n.index for n in nodes if n.parents]
        # edges split by whether their source changes during inference
        self.var_parents = {
            i: [e for e in nodes[i].parents if is_free[net.edges[e].source]] for i in self.predicted
        }
        self.const_parents = {
            i: [e for e in nodes[i].parents if not is_free[net.edges[e].source]]
            for i in self.predicted
        }
        self.sent_free = sorted(
            {net.edges[e].source for i in self.predicted for e in self.var_parents[i]}
        )
        self.sent_clamped = sorted(
            {net.edges[e].source for e in range(len(net.edges)) if not is_free[net.edges[e].source]}
        )
        self.ce_nodes = [i for i in self.predicted if nodes[i].energy == "cross_entropy"]
        # A free cross-entropy node is held at its prediction softmax(μ) (the minimizer of
        # KL(x‖softmax(μ))): the CE energy is linear in x, so gradient steps would leave the
        # probability simplex and never stop.
        self.free_ce = {i for i in self.ce_nodes if is_free[i]}
        self.unit_precision = all(n.precision == 1.0 for n in nodes)
        precision = torch.ones(net.state_size, device=net.device, dtype=net.dtype)
        col_node = torch.empty(net.state_size, dtype=torch.long, device=net.device)
        mask = torch.zeros(net.state_size, device=net.device, dtype=net.dtype)
        for n in nodes:
            precision[n.cols] = n.precision
            col_node[n.cols] = n.index
            if is_free[n.index]:
                mask[n.cols] = 1.0
        self.precision, self.col_node, self.free_mask = precision, col_node, mask
        # the free columns as one range when they are contiguous (the usual layout): the state
        # update then touches only them, not the clamped data's columns
        spans = sorted((nodes[i].offset, nodes[i].offset + nodes[i].size) for i in self.free_nodes)
        contiguous = all(a[1] == b[0] for a, b in itertools.pairwise(spans))
        self.free_range: tuple[int, int] | None = (
            (spans[0][0], spans[-1][1]) if spans and contiguous else None
        )
        kernels = net.kernels
        self.learnable_edges = [
            e.index
            for e in net.edges
            if e.index < len(kernels) and any(True for _ in kernels[e.index].parameters())
        ]
        self._buffers: dict[int, _Buffers] = {}
        self._views_key: tuple[object, ...] | None = None
        self._gauss_nodes: list[int] = []
        self._per_node_energy = False
        self._stacks: list[_EdgeStack] = []
        self._stacked_edges: set[int] = set()
        self._const_token: tuple[object, ...] | None = None
        if len(net.kernels) == len(net.edges):
            self._build_plans()

    def _build_plans(self) -> None:
        """Static per-step plans: plain lists of (index, bound methods) the hot loop walks."""
        net, nodes = self.net, self.net.nodes
        k = [self._kernel(e) for e in range(len(net.edges))]
        self._stacks = self._build_stacks(k)
        self._stacked_edges = stacked = {e for st in self._stacks for e in st.edges}
        self._stacked_in = {net.edges[e].target for e in stacked}
        self._stacked_out = {net.edges[e].source for e in stacked}
        self._sent_plan = [
            (j, None if nodes[j].activation.is_identity else nodes[j].activation.fn)
            for j in self.sent_free
        ]
        self._err_plan = [
            (
                i,
                [
                    (k[e].forward, net.edges[e].source)
                    for e in self.var_parents[i]
                    if e not in stacked
                ],
                nodes[i].energy == "cross_entropy",
                i in self._stacked_in,
            )
            for i in self.predicted
        ]
        self._grad_plan = [
            (
                j,
                bool(nodes[j].parents) and j not in self.free_ce,
                [(k[e].vjp, net.edges[e].target) for e in nodes[j].children if e not in stacked],
                None if nodes[j].activation.is_identity else nodes[j].activation.vjp,
                j in self._stacked_out,
            )
            for j in self.free_nodes
        ]
        self._hold_plan = [
            (i, [(k[e].forward, net.edges[e].source) for e in self.var_parents[i]])
            for i in self._hold_order()
        ]
        self._sent_fn = dict(self._sent_plan)
        self._gauss_nodes = [i for i in self.predicted if nodes[i].energy == "gaussian"]
        self._per_node_energy = len(self._gauss_nodes) <= 16
        self._gauss_index = torch.tensor(self._gauss_nodes, dtype=torch.long, device=net.device)
        self._gauss_half_w = torch.tensor(
            [0.5 * nodes[i].precision for i in self._gauss_nodes],
            device=net.device,
            dtype=net.dtype,
        )

    def _build_stacks(self, k: list[EdgeKernel]) -> list[_EdgeStack]:
        net = self.net
        groups: dict[tuple[int, int, bool], list[int]] = {}
        for i in self.predicted:
            for e in self.var_parents[i]:
                kern = k[e]
                if (
                    isinstance(kern, LinearKernel)
                    and len(kern.in_shape) == 1
                    and len(kern.out_shape) == 1
                ):
                    key = (kern.in_shape[0], kern.out_shape[0], kern.bias is not None)
                    groups.setdefault(key, []).append(e)
        stacks = []
        for members in groups.values():
            if len(members) < STACK_MIN:
                continue
            kernels = [kern for kern in (k[e] for e in members) if isinstance(kern, LinearKernel)]
            src = [net.edges[e].source for e in members]
            tgt = [net.edges[e].target for e in members]

            def cols(nodes: list[int]) -> torch.Tensor:
                return torch.cat(
                    [
                        torch.arange(net.nodes[n].offset, net.nodes[n].offset + net.nodes[n].size)
                        for n in nodes
                    ]
                ).to(net.device)

            stacks.append(
                _EdgeStack(
                    members,
                    kernels,
                    src,
                    tgt,
                    cols(src),
                    cols(tgt),
                )
            )
        return stacks

    def _stacked_forward(self, buf: _Buffers, sent: dict[int, torch.Tensor]) -> None:
        mu = buf.stacked_mu
        assert mu is not None
        mu.zero_()
        b = mu.shape[0]
        for st in self._stacks:
            s_in = torch.stack([sent[n] for n in st.sources])  # [G, B, in]
            assert st.weight is not None
            out = torch.bmm(s_in, st.weight.transpose(1, 2))
            if st.bias is not None:
                out += st.bias
            mu.index_add_(1, st.tgt_cols, out.transpose(0, 1).reshape(b, -1))

    def _stacked_messages(self, buf: _Buffers) -> None:
        msg = buf.stacked_msg
        assert msg is not None
        msg.zero_()
        b = msg.shape[0]
        for st in self._stacks:
            d = torch.stack([self._dv[n] for n in st.targets])  # [G, B, out]
            assert st.weight is not None
            m = torch.bmm(d, st.weight)  # [G, B, in]
            msg.index_add_(1, st.src_cols, m.transpose(0, 1).reshape(b, -1))

    def _hold_order(self) -> list[int]:
        """Free CE nodes in dependency order (a CE node feeding another is held first)."""
        import networkx as nx

        names = {self.net.nodes[i].name: i for i in self.free_ce}
        sub = self.net.graph.subgraph(names)
        if not nx.is_directed_acyclic_graph(sub):
            return sorted(self.free_ce)
        return [names[n] for n in nx.lexicographical_topological_sort(sub, key=names.__getitem__)]

    def _kernel(self, e: int) -> EdgeKernel:
        kernel = self.net.kernels[e]
        assert isinstance(kernel, EdgeKernel)
        return kernel

    # --- buffers ---------------------------------------------------------------------------
    def buffers(self, batch_size: int) -> _Buffers:
        """The reusable [B, D] buffers for this batch size."""
        buf = self._buffers.pop(batch_size, None)  # re-inserted last: evict least recently used
        if buf is None:
            eps = self.net.new_states(batch_size)
            delta = eps if self.unit_precision else self.net.new_states(batch_size)
            buf = _Buffers(eps=eps, delta=delta, grad=self.net.new_states(batch_size))
            if len(self._buffers) >= 4:  # a few sizes (train, eval, a last partial batch)
                self._buffers.pop(next(iter(self._buffers)))
        self._buffers[batch_size] = buf
        return buf

    def _view(self, t: torch.Tensor, i: int) -> torch.Tensor:
        node = self.net.nodes[i]
        v = t[:, node.cols]
        return v.view(t.shape[0], *node.shape) if len(node.shape) > 1 else v

    def _sent(self, x: torch.Tensor, i: int) -> torch.Tensor:
        node = self.net.nodes[i]
        v = self._view(x, i)
        return v if node.activation.is_identity else node.activation.fn(v)

    # --- the step ------------------------------------------------------------------------
    def _token(self, x: torch.Tensor, buf: _Buffers) -> tuple[object, ...]:
        """Identifies x's contents and the weights: in-place writes bump ``_version``."""
        return (x.data_ptr(), x._version, id(buf), tuple(p._version for p in self.net.parameters()))

    @torch.no_grad()
    def forward_sweep(self, x: torch.Tensor, order: list[int]) -> None:
        """Forward initialization x_i = μ_i for ``order`` (free nodes whose parents are clamped
        or earlier in the order), reusing the fixed parts of μ that :meth:`prepare` computes —
        the inference that follows on the same, unmodified buffer does not recompute them."""
        buf = self.prepare(x, reuse_consts=False)
        xv, edges = self._xv, self.net.edges
        sent: dict[int, torch.Tensor] = {}
        for i in order:
            mu = buf.const[i]
            for e in self.var_parents[i]:
                src = edges[e].source
                if src not in sent:
                    sent[src] = self._sent(x, src)
                out = self._kernel(e).forward(sent[src])
                mu = out if mu is None else mu + out
            assert mu is not None, f"forward sweep reached {self.net.nodes[i].name!r} too early"
            # a cross-entropy node swept here is free: it starts where inference holds it
            xv[i].copy_(torch.softmax(mu, dim=-1) if i in self.ce_nodes else mu)
        self._const_token = self._token(x, buf)

    def prepare(self, x: torch.Tensor, *, reuse_consts: bool = False) -> _Buffers:
        """Start of a batch: cache σ(x_j) of clamped sources and the fixed parts of μ.

        Args:
            reuse_consts: keep the fixed parts computed by :meth:`forward_sweep` when neither x
                nor the weights changed since (the caller vouches for the weights: fused
                optimizers change them without bumping ``_version``; off in CUDA-graph capture).
        """
        # no zeroing: grad's clamped columns and eps's root columns are never written, and
        # every other column is overwritten each step
        buf = self.buffers(x.shape[0])
        key = (x.data_ptr(), tuple(x.shape), x.stride(), id(buf))
        if key != self._views_key:  # views of the (reused) buffers, built once per buffer
            n = range(len(self.net.nodes))
            self._xv = [self._view(x, i) for i in n]
            self._ev = [self._view(buf.eps, i) for i in n]
            self._dv = [self._view(buf.delta, i) for i in n]
            self._gv = [self._view(buf.grad, i) for i in n]
            self._views_key = key
        kernels, edges = self.net.kernels, self.net.edges
        if self._stacks:
            if buf.stacked_mu is None or buf.stacked_mu.shape != x.shape:
                buf.stacked_mu = torch.zeros_like(x)
                buf.stacked_msg = torch.zeros_like(x)
            self._smu = [self._view(buf.stacked_mu, i) for i in range(len(self.net.nodes))]
            self._smsg = [
                self._view(buf.stacked_msg, i)  # type: ignore[arg-type]
                for i in range(len(self.net.nodes))
            ]
            with torch.no_grad():  # the weights change between batches, not during inference
                for st in self._stacks:
                    st.weight = torch.stack([kern.weight for kern in st.kernels])
                    biases = [kern.bias for kern in st.kernels if kern.bias is not None]
                    st.bias = torch.stack(biases)[:, None, :] if biases else None
        if reuse_consts and self._const_token == self._token(x, buf):
            return buf
        self._const_token = None
        with torch.no_grad():
            buf.sent = {j: self._sent(x, j) for j in self.sent_clamped}
            buf.const = {}
            for i in self.predicted:
                mu = None
                for e in self.const_parents[i]:
                    out = kernels[e](buf.sent[edges[e].source])
                    mu = out if mu is None else mu + out
                buf.const[i] = mu
        return buf

    @torch.no_grad()
    def errors(self, x: torch.Tensor, buf: _Buffers) -> dict[int, torch.Tensor]:
        """Compute ε and δ for the current states; returns σ(x_j) of the free senders.

        ``x`` must be the buffer passed to :meth:`prepare` (its views are cached there).
        """
        xv, ev = self._xv, self._ev
        sent = buf.sent_free
        for j, fn in self._sent_plan:
            sent[j] = xv[j] if fn is None else fn(xv[j])
        const = buf.const
        for i, var in self._hold_plan:  # free CE nodes first: x_i ← softmax(μ_i)
            mu = const[i]
            for fwd, src in var:
                out = fwd(sent[src])
                mu = out if mu is None else mu + out  # outputs may be views: no in-place
            assert mu is not None
            xv[i].copy_(torch.softmax(mu, dim=-1))
            fn = self._sent_fn.get(i)
            if fn is not None:
                sent[i] = fn(xv[i])
        if self._stacks:
            self._stacked_forward(buf, sent)
        for i, var, is_ce, stacked_in in self._err_plan:
            mu = const[i]
            for fwd, src in var:
                out = fwd(sent[src])
                mu = out if mu is None else mu + out  # outputs may be views: no in-place
            if stacked_in:
                mu = self._smu[i] if mu is None else mu + self._smu[i]
            assert mu is not None
            if is_ce:
                self._cross_entropy(buf, i, mu)
            else:
                torch.sub(xv[i], mu, out=ev[i])
        if not self.unit_precision:
            torch.mul(buf.eps, self.precision, out=buf.delta)
        return sent

    def _cross_entropy(self, buf: _Buffers, i: int, mu: torch.Tensor) -> None:
        xi = self._xv[i]
        p = torch.softmax(mu, dim=-1)
        # "ε" of a CE node: x − softmax(μ) Σx, so that δ = w ε as for gaussian nodes
        torch.sub(xi, p.mul_(xi.sum(-1, keepdim=True)), out=self._ev[i])
        buf.ce_mu[i] = mu

    @torch.no_grad()
    def state_grad(self, x: torch.Tensor, buf: _Buffers, sent: dict[int, torch.Tensor]) -> None:
        """∂E/∂x into ``buf.grad`` on the free columns (messages only to free sources).

        A free cross-entropy node has no own term: errors() holds it at softmax(μ).
        """
        xv, dv, gv = self._xv, self._dv, self._gv
        if self._stacks:
            self._stacked_messages(buf)
        for j, has_own, children, act_vjp, stacked_out in self._grad_plan:
            msg = None
            for vjp, tgt in children:
                m = vjp(sent[j], dv[tgt])
                msg = m if msg is None else msg + m  # m may be a view of δ: no in-place
            if stacked_out:
                msg = self._smsg[j] if msg is None else msg + self._smsg[j]
            out = gv[j]
            if msg is None:
                if has_own:
                    out.copy_(dv[j])
                continue
            if act_vjp is not None:
                msg = act_vjp(msg, xv[j])
            if has_own:
                torch.sub(dv[j], msg, out=out)
            else:
                torch.neg(msg, out=out)

    @torch.no_grad()
    def node_energies(self, buf: _Buffers, out: torch.Tensor | None = None) -> torch.Tensor:
        """Per-node energies [N] from the current errors (gaussian: ½ w Σ ε²)."""
        n = len(self.net.nodes)
        gauss = self._gauss_nodes
        if not gauss:
            energies = torch.zeros(n, device=buf.eps.device, dtype=buf.eps.dtype)
        elif self._per_node_energy:  # few nodes: one norm per node, skipping clamped columns
            norms = torch.stack([torch.linalg.vector_norm(self._ev[i]) for i in gauss])
            energies = torch.zeros(n, device=norms.device, dtype=norms.dtype).index_copy_(
                0, self._gauss_index, norms.square_().mul_(self._gauss_half_w)
            )
        else:  # many nodes (or no per-node views): column sums, then a segment sum per node
            col_sq = (buf.eps * buf.eps).sum(0)
            if not self.unit_precision:
                col_sq = col_sq * self.precision
            energies = torch.zeros(n, device=col_sq.device, dtype=col_sq.dtype).index_add_(
                0, self.col_node, col_sq, alpha=0.5
            )
        for i in self.ce_nodes:  # −w Σ x log softmax(μ), from the μ errors() kept
            logp = torch.log_softmax(buf.ce_mu[i], dim=-1)
            energies[i] = -self.net.nodes[i].precision * (self._xv[i] * logp).sum()
        if out is not None:
            out.copy_(energies)
            return out
        return energies

    def param_grads(self, x: torch.Tensor, buf: _Buffers) -> None:
        """Accumulate ∂E/∂θ into ``.grad`` of every parameter, at the current errors."""
        edges = self.net.edges
        sent = buf.sent_free | buf.sent  # σ(x) at the states of the last errors() call
        stacked = self._stacked_edges
        with torch.no_grad():
            for st in self._stacks:  # ∂E/∂W = −δᵀ σ(x) for the whole group in one bmm
                s_in = torch.stack([sent[n] for n in st.sources])  # [G, B, in]
                d = torch.stack([self._view(buf.delta, n) for n in st.targets])  # [G, B, out]
                gw = -torch.bmm(d.transpose(1, 2), s_in)
                gb = -d.sum(1) if st.bias is not None else None
                for idx, lin in enumerate(st.kernels):
                    stacked_grads = [gw[idx]] if gb is None else [gw[idx], gb[idx]]
                    for p, grad in zip(lin.parameters(), stacked_grads, strict=True):
                        p.grad = grad if p.grad is None else p.grad.add_(grad)
            for e in self.learnable_edges:
                if e in stacked:
                    continue
                kernel = self._kernel(e)
                grads = kernel.param_grads(
                    sent[edges[e].source], self._view(buf.delta, edges[e].target)
                )
                for p, g in zip(kernel.parameters(), grads, strict=True):
                    p.grad = g if p.grad is None else p.grad.add_(g)


def program_for(net: PCNetwork, clamp: frozenset[str]) -> InferenceProgram:
    """The cached program of ``net`` for ``clamp`` (built on first use)."""
    from pcgraph.compiler.sparse import SparsePCNetwork, SparseProgram

    key = (clamp, "local")
    prog = net._programs.get(key)
    if prog is None:
        prog = (
            SparseProgram(net, clamp)
            if isinstance(net, SparsePCNetwork)
            else InferenceProgram(net, clamp)
        )
        net._programs[key] = prog
    assert isinstance(prog, InferenceProgram)
    return prog
