"""Hopfield-memory initialization (paper Eqs. 8–9): the informed init for any graph.

A modern Hopfield retrieval layer per target node i,

    x_i(0) = softmax(β (o Q_i + b_i) K_iᵀ) V_i,

queried with the observations o (the clamped values, concatenated and standardized per sample).
Targets are the free nodes forward init cannot reach: unclamped roots and free nodes on cycles
(:func:`pcgraph.analysis.memory_targets`); every other free node is then forward-initialized from
them, so the whole initial state is a function x(0) = S(m(o)) of the retrievals m.

Training (``observe``, after each training minibatch's inference), with the weights held fixed:

- the first minibatch fits V = A⁺ H by pseudo-inverse, H the targets' states x_i(T), but only
  where they carry information (moved away from their initial value): when T is smaller than a
  target's distance to the observations, x_i(T) = x_i(0) and the fit would store zeros;
- afterwards ``steps`` Adam steps on a loss chosen by ``loss``:

  - ``"energy"`` (default): L_mem = E(S(m(o))), the energy at initialization (amortised
    inference); a signal even at T = 0, whatever γ and T. At T = 1 the ``"sweep"`` gradient is
    exactly 2γ times this one (x(1) − x(0) = −γ ∇E(x(0))); for T > 1 they differ beyond first
    order in γ;
  - ``"sweep"``: L_mem = Σ_{i ∈ targets ∪ swept} ‖x_i(0) − x_i(T)‖², Eq. 9 summed over
    every node the initializer sets, differentiated through the forward sweep S, x(T) held
    fixed. Its signal exists at every T ≥ 1 on any graph: the first inference step moves the
    parents of every node with a non-zero error, and each of them is in the sum;
  - ``"target"``: Eq. 9 over the targets only (the paper's text). No signal while T is below
    the targets' depth (docs/initializations.md, "Pitfall").
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from pcgraph.analysis.cost import MEMORY_RETRIEVAL_SMM, init_smm
from pcgraph.energies import get_energy
from pcgraph.errors import InitError
from pcgraph.init.base import InitContext, Initializer

__all__ = ["MEMORY_LOSSES", "HopfieldMemory", "MemoryInit", "MemoryLoss"]

MemoryLoss = Literal["sweep", "target", "energy"]
MEMORY_LOSSES: tuple[str, ...] = ("sweep", "target", "energy")


class HopfieldMemory(nn.Module):
    """softmax(β (o Q + b) Kᵀ) V with ``heads`` heads whose attentions are averaged.

    Args:
        obs_dim: size of the observation vector o.
        out_dim: size of the retrieved state (the target node).
        patterns: M, the number of stored patterns (rows of K and V).
        heads, embed_dim: attention heads and total query/key width (divisible by heads).
        beta: inverse temperature β; default 1/√(embed_dim / heads).

    Shapes:
        o: [B, obs_dim] → [B, out_dim].
    """

    def __init__(
        self,
        obs_dim: int,
        out_dim: int,
        *,
        patterns: int,
        heads: int,
        embed_dim: int,
        beta: float | None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if embed_dim % heads:
            raise InitError(f"memory: embed_dim={embed_dim} must be divisible by heads={heads}")
        self.heads, self.head_dim = heads, embed_dim // heads
        self.beta = beta if beta is not None else 1.0 / math.sqrt(self.head_dim)
        g = generator
        self.query = nn.Parameter(torch.randn(obs_dim, embed_dim, generator=g) / math.sqrt(obs_dim))
        self.bias = nn.Parameter(torch.zeros(embed_dim))
        self.keys = nn.Parameter(torch.randn(patterns, embed_dim, generator=g))
        self.values = nn.Parameter(torch.zeros(patterns, out_dim))

    def attention(self, o: torch.Tensor) -> torch.Tensor:
        """softmax(β q Kᵀ) averaged over heads: [B, M]."""
        o = (o - o.mean(-1, keepdim=True)) / (o.std(-1, keepdim=True) + 1e-6)
        q = (o @ self.query + self.bias).view(o.shape[0], self.heads, self.head_dim)
        k = self.keys.view(self.keys.shape[0], self.heads, self.head_dim)
        scores = torch.einsum("bhe,mhe->bhm", q, k) * self.beta
        return scores.softmax(-1).mean(1)

    def forward(self, o: torch.Tensor) -> torch.Tensor:
        return self.attention(o) @ self.values

    @torch.no_grad()
    def fit_values(self, o: torch.Tensor, states: torch.Tensor) -> None:
        """V = A⁺ H: retrieval on ``o`` then reproduces ``states`` (exactly when M ≥ B and A has
        full row rank)."""
        a = self.attention(o).double()
        self.values.copy_((torch.linalg.pinv(a) @ states.double()).to(self.values.dtype))


class MemoryInit(Initializer):
    """Hopfield memories for the targets, forward init below them (see the module docstring).

    Args:
        patterns: stored patterns M per memory (≥ the batch size for an exact first fit).
        heads, embed_dim, beta: the retrieval's attention (β default 1/√head_dim).
        lr: learning rate of the memory's own Adam optimizer.
        steps: gradient steps on L_mem after each minibatch.
        loss: ``energy`` (E at initialization, through the forward sweep), ``sweep`` (Eq. 9
            over every initialized node, through the sweep) or ``target`` (Eq. 9 over the
            targets only, the paper's text).
        fit: fit V = A⁺ H on the first minibatch whose targets moved during inference.
        seed: seeds the memory's parameter initialization.
    """

    name = "memory"

    def __init__(
        self,
        *,
        patterns: int = 512,
        heads: int = 4,
        embed_dim: int = 128,
        beta: float | None = None,
        lr: float = 1e-3,
        steps: int = 1,
        loss: MemoryLoss = "energy",
        fit: bool = True,
        seed: int = 0,
    ) -> None:
        if patterns <= 0 or heads <= 0 or embed_dim <= 0 or lr <= 0 or steps < 0:
            raise InitError("memory: patterns, heads, embed_dim and lr must be > 0, steps ≥ 0")
        if loss not in MEMORY_LOSSES:
            raise InitError(f"memory: unknown loss {loss!r}; valid choices: {MEMORY_LOSSES}")
        self.patterns, self.heads, self.embed_dim, self.beta = patterns, heads, embed_dim, beta
        self.lr, self.steps, self.loss, self.fit, self.seed = lr, steps, loss, fit, seed
        self.memories = nn.ModuleDict()
        self.fitted: set[str] = set()  # targets whose first minibatch has been handled
        self.obs_nodes: list[str] | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self._cost: int | None = None
        self.last_loss: float | None = None

    # --- observations and targets ---------------------------------------------------------
    def observations(self, x: torch.Tensor, ctx: InitContext) -> torch.Tensor:
        """o: the observation nodes' values concatenated, [B, obs_dim]. Observation nodes are
        the clamp set of the first call; one that is not clamped later enters as zeros."""
        net = ctx.net
        if self.obs_nodes is None:
            self.obs_nodes = [n.name for n in net.nodes if n.name in ctx.clamp]
            if not self.obs_nodes:
                raise InitError("memory init needs observations: clamp at least one node")
        parts = []
        for name in self.obs_nodes:
            v = net.view(x, name).reshape(x.shape[0], -1)
            parts.append(v if name in ctx.clamp else torch.zeros_like(v))
        return torch.cat(parts, dim=1)

    def _targets(self, ctx: InitContext) -> list[str]:
        return list(ctx.plan.memory_targets)

    def _order(self, ctx: InitContext) -> list[int]:
        """The forward sweep below the targets: node indices in topological order."""
        return ctx.plan.forward_order(ctx.clamp | frozenset(ctx.plan.memory_targets))

    def _memory(self, name: str, obs_dim: int, ctx: InitContext) -> HopfieldMemory:
        key = f"n{ctx.net.node_index[name]}"  # ModuleDict keys may not contain '.'
        if key not in self.memories:
            g = torch.Generator().manual_seed(self.seed + len(self.memories))
            mem = HopfieldMemory(
                obs_dim,
                ctx.net.node(name).size,
                patterns=self.patterns,
                heads=self.heads,
                embed_dim=self.embed_dim,
                beta=self.beta,
                generator=g,
            ).to(device=ctx.net.device, dtype=ctx.net.dtype)
            self.memories[key] = mem
            self.optimizer = torch.optim.Adam(self.memories.parameters(), lr=self.lr)
        found = self.memories[key]
        assert isinstance(found, HopfieldMemory)
        return found

    def initial_states(self, x: torch.Tensor, o: torch.Tensor, ctx: InitContext) -> torch.Tensor:
        """x(0) = S(m(o)) out of place, differentiable with respect to the memories (and the
        weights): the clamped columns of ``x`` are kept, the targets retrieved, the nodes below
        them predicted in topological order. Columns of other nodes keep ``x``'s values."""
        net = ctx.net
        x0 = x.detach()
        for name in self._targets(ctx):
            cols = net.node(name).cols
            m = self._memory(name, o.shape[1], ctx)(o)
            x0 = x0.slice_scatter(m, dim=1, start=cols.start, end=cols.stop)
        for i in self._order(ctx):
            node = net.nodes[i]
            mu = net.prediction(x0, i)
            energy = get_energy(node.energy)
            if energy.held:  # as forward_sweep: held at its mean
                mu = energy.mean(mu)
            mu = mu.reshape(x0.shape[0], node.size)
            x0 = x0.slice_scatter(mu, dim=1, start=node.cols.start, end=node.cols.stop)
        return x0

    def memory_loss(self, x_final: torch.Tensor, o: torch.Tensor, ctx: InitContext) -> torch.Tensor:
        """L_mem of this minibatch (summed over the batch), differentiable in the memories."""
        net = ctx.net
        x0 = self.initial_states(x_final, o, ctx)
        if self.loss == "energy":
            return net.energy(x0)
        nodes = [net.node_index[t] for t in self._targets(ctx)]
        if self.loss == "sweep":
            nodes += self._order(ctx)
        target = x_final.detach()
        loss = x0.new_zeros(())
        for i in nodes:
            cols = net.nodes[i].cols
            loss = loss + ((x0[:, cols] - target[:, cols]) ** 2).sum()
        return loss

    # --- protocol --------------------------------------------------------------------------
    def init(self, x: torch.Tensor, ctx: InitContext) -> None:
        targets = self._targets(ctx)
        o = self.observations(x, ctx)
        x[:, ctx.free_cols] = 0.0
        full = init_smm(ctx.net.graph, ctx.clamp, "memory")
        retrieved = any(t in self.fitted for t in targets)
        self._cost = full if retrieved or not targets else full - MEMORY_RETRIEVAL_SMM
        with torch.no_grad():
            for name in targets:
                if name in self.fitted:
                    x[:, ctx.net.node(name).cols] = self._memory(name, o.shape[1], ctx)(o)
            ctx.net.forward_sweep(x, self._order(ctx))

    def observe(self, x_final: torch.Tensor, ctx: InitContext) -> None:
        if not ctx.train:
            return
        targets = self._targets(ctx)
        if not targets:
            return
        o = self.observations(x_final, ctx).detach()
        mems = {t: self._memory(t, o.shape[1], ctx) for t in targets}
        just_fitted = False
        for name, mem in mems.items():
            if name in self.fitted:
                continue
            self.fitted.add(name)
            states = x_final[:, ctx.net.node(name).cols]
            if ctx.dist is not None:  # fit on the global batch: the same V on every rank
                o_all, states = ctx.dist.all_gather_cat(o), ctx.dist.all_gather_cat(states)
            else:
                o_all = o
            # the unfitted memory started the target at 0: where it has not moved, H = 0 says
            # nothing and V = A⁺ H would store zeros; leave V to the gradient steps instead
            if self.fit and bool(states.abs().amax() > 0):
                mem.fit_values(o_all, states)
                just_fitted = True
        if just_fitted:
            return  # the fit is exact on this batch: a gradient step would only add noise
        assert self.optimizer is not None
        batch = o.shape[0] * (ctx.dist.world_size if ctx.dist is not None else 1)
        params = [p for p in self.memories.parameters() if p.requires_grad]
        with torch.enable_grad():
            for _ in range(self.steps):
                loss = self.memory_loss(x_final, o, ctx) / batch
                # the weights are held fixed: gradients for the memories only
                grads = torch.autograd.grad(loss, params, allow_unused=True)
                for p, g in zip(params, grads, strict=True):
                    p.grad = g
                if ctx.dist is not None:  # L_mem of the global batch, the same on every rank
                    ctx.dist.all_reduce_many_(p.grad for p in params if p.grad is not None)
                self.optimizer.step()
                self.last_loss = float(loss.detach())

    def smm(self, ctx: InitContext) -> int:
        """The last :meth:`init`'s cost: one retrieval (3 SMMs) once a memory is fitted, plus
        the forward sweep below the targets (before the first fit the targets start at 0)."""
        if self._cost is not None:
            return self._cost
        return init_smm(ctx.net.graph, ctx.clamp, "memory")

    def extra_parameters(self) -> int:
        return sum(p.numel() for p in self.memories.parameters())

    def reset(self) -> None:
        self.memories = nn.ModuleDict()
        self.fitted = set()
        self.obs_nodes = None
        self.optimizer = None

    def state_dict(self) -> dict[str, object]:
        return {
            "memories": {k: m.state_dict() for k, m in self.memories.items()},
            "fitted": sorted(self.fitted),
            "obs_nodes": self.obs_nodes,
            "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.reset()
        memories = state.get("memories") or {}
        assert isinstance(memories, dict)
        for key, tensors in memories.items():
            obs_dim, embed = tensors["query"].shape
            patterns, out_dim = tensors["values"].shape
            mem = HopfieldMemory(
                obs_dim,
                out_dim,
                patterns=patterns,
                heads=self.heads,
                embed_dim=embed,
                beta=self.beta,
            )
            mem.load_state_dict(tensors)
            self.memories[key] = mem.to(
                device=tensors["values"].device, dtype=tensors["values"].dtype
            )
        fitted, obs = state.get("fitted") or [], state.get("obs_nodes")
        assert isinstance(fitted, list)
        self.fitted = set(fitted)
        self.obs_nodes = list(obs) if isinstance(obs, list) else None
        if len(self.memories):
            self.optimizer = torch.optim.Adam(self.memories.parameters(), lr=self.lr)
            opt_state = state.get("optimizer")
            if isinstance(opt_state, dict):
                self.optimizer.load_state_dict(opt_state)

    def __repr__(self) -> str:
        return (
            f"MemoryInit(patterns={self.patterns}, heads={self.heads}, "
            f"embed_dim={self.embed_dim}, lr={self.lr}, steps={self.steps}, loss={self.loss!r})"
        )
