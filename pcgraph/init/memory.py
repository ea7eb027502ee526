"""Hopfield-memory initialization (paper Eqs. 8–9): the informed init for any graph.

A modern Hopfield retrieval layer per target node i,

    x_i(0) = softmax(β (o Q_i + b_i) K_iᵀ) V_i,

queried with the observations o (the observation nodes' values, concatenated and standardized
per sample). Targets are the free nodes forward init cannot reach: unclamped roots and free nodes
on cycles (:func:`pcgraph.analysis.memory_targets`); every other free node is then
forward-initialized from them, so the whole initial state is a function x(0) = S(m(o)) of the
retrievals m.

Memories are kept per training clamp set (a :class:`MemoryBank`): a bank is built and trained
under the clamp set it is trained with, and reads only its observation nodes — by default the
nodes clamped both in training and at evaluation (:func:`pcgraph.analysis.memory_observations`:
the inputs of a supervised classifier, never its label; the image of a generative decoder).
Under another clamp set (evaluation, a query) a bank is used only if every node it reads is
clamped there and it has a memory for every node that needs one
(:func:`pcgraph.analysis.memory_serves`); otherwise :meth:`MemoryInit.init` raises
:class:`~pcgraph.errors.InitError` naming the clamp set, never retrieving from nothing.

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
from collections.abc import Sequence
from typing import Literal

import torch

from pcgraph.analysis.cost import MEMORY_RETRIEVAL_SMM, init_smm
from pcgraph.analysis.memory import (
    check_memory,
    format_nodes,
    memory_observations,
    memory_serves,
)
from pcgraph.compiler.network import PCNetwork
from pcgraph.energies import get_energy
from pcgraph.errors import InitError
from pcgraph.init.base import InitContext, Initializer
from pcgraph.init.hopfield import (
    HopfieldMemory,
    MemoryBank,
    check_beta,
    check_heads,
    check_whole,
    load_banks,
    memory_optimizer,
    named_clamp,
    no_serving_bank,
)
from pcgraph.init.memory_kept import KeptInit, keeps_graph, parameter_versions

__all__ = ["MEMORY_LOSSES", "HopfieldMemory", "MemoryBank", "MemoryInit", "MemoryLoss"]

MemoryLoss = Literal["sweep", "target", "energy"]
MEMORY_LOSSES: tuple[str, ...] = ("sweep", "target", "energy")


class MemoryInit(Initializer):
    """Hopfield memories for the targets, forward init below them (see the module docstring).

    Args:
        patterns: stored patterns M per memory (≥ the batch size for an exact first fit).
        heads, embed_dim, beta: the retrieval's attention (β default 1/√head_dim); heads must
            divide embed_dim.
        lr: learning rate of the memory's own Adam optimizer.
        steps: gradient steps on L_mem after each minibatch.
        loss: ``energy`` (E at initialization, through the forward sweep), ``sweep`` (Eq. 9
            over every initialized node, through the sweep) or ``target`` (Eq. 9 over the
            targets only, the paper's text).
        fit: fit V = A⁺ H on the first minibatch whose targets moved during inference.
        linear: add a linear path o W beside each retrieval (x_i(0) = softmax(β q Kᵀ) V + o W;
            :class:`HopfieldMemory`): the retrieval alone is a blend of M stored patterns, the
            linear path follows each observation's own detail. No extra sequential SMM.
        seed: seeds the memory's parameter initialization.
        observe: the nodes every memory reads (its observations o); None: per training clamp
            set, the nodes clamped both in training and at evaluation
            (:func:`pcgraph.analysis.memory_observations`). A node that is not clamped in
            training, or is free at evaluation (a classifier's label), is refused.

    Raises:
        InitError: an option out of range, naming it and its value.
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
        linear: bool = False,
        seed: int = 0,
        observe: Sequence[str] | None = None,
    ) -> None:
        check_whole("patterns", patterns, 1)
        check_whole("heads", heads, 1)
        check_whole("embed_dim", embed_dim, 1)
        check_heads(heads, embed_dim)
        check_beta(beta)
        if isinstance(lr, bool) or not isinstance(lr, int | float) or not 0 < lr < math.inf:
            raise InitError(f"memory: lr must be a finite number > 0, got {lr!r}")
        check_whole("steps", steps, 0)
        check_whole("seed", seed, 0)
        if not isinstance(linear, bool):
            raise InitError(f"memory: linear must be True or False, got {linear!r}")
        if loss not in MEMORY_LOSSES:
            raise InitError(f"memory: unknown loss {loss!r}; valid choices: {MEMORY_LOSSES}")
        if observe is not None and (
            isinstance(observe, str) or not all(isinstance(n, str) for n in observe)
        ):
            raise InitError(
                f"memory: observe must be a list of node names, got {observe!r}; e.g. observe=['x']"
            )
        self.patterns, self.heads, self.embed_dim, self.beta = patterns, heads, embed_dim, beta
        self.lr, self.steps, self.loss, self.fit, self.seed = lr, steps, loss, fit, seed
        self.linear = linear
        self.observe_nodes = None if observe is None else tuple(observe)
        self.banks: dict[frozenset[str], MemoryBank] = {}
        self._prepared: set[frozenset[str]] = set()  # training clamp sets a learner declared
        # (bank key, clamp set) → why that bank cannot serve it (None: it can)
        self._serves: dict[tuple[frozenset[str], frozenset[str]], str | None] = {}
        self._cost: int | None = None
        self._kept: KeptInit | None = None  # x(0) of the last training init (memory_kept)
        self.last_loss: float | None = None

    # --- banks: the memories of each training clamp set ----------------------------------
    def prepare(self, net: PCNetwork, clamp: frozenset[str]) -> None:
        """Check the memory of a learner trained under ``clamp`` and build its (empty) bank, so
        that evaluation before any training is served (untrained: targets start at 0).

        Raises:
            InitError: observations that are not clamped in training or are free at
                evaluation, or evaluation needing memories training never learns (naming the
                nodes; see :func:`pcgraph.analysis.check_memory`).
        """
        observe = check_memory(net.graph, clamp, self.observe_nodes)
        self._prepared.add(clamp)
        if clamp not in self.banks:
            self.banks[clamp] = MemoryBank(clamp, observe)

    def bank(self, ctx: InitContext) -> MemoryBank:
        """The bank used under ``ctx.clamp``: in training its own (built on first use); at
        evaluation the best bank that serves it (:meth:`serving`).

        Raises:
            InitError: at evaluation, no bank serves the clamp set (naming it and the fix).
        """
        if not ctx.train:
            return self.serving(ctx)
        found = self.banks.get(ctx.clamp)
        if found is None:  # a clamp set trained for the first time: its own memories
            observe = memory_observations(ctx.net.graph, ctx.clamp, self.observe_nodes)
            found = self.banks[ctx.clamp] = MemoryBank(ctx.clamp, observe)
        return found

    def serving(self, ctx: InitContext) -> MemoryBank:
        """Among the banks that serve ``ctx.clamp`` (:func:`memory_serves`: every node it reads
        is clamped there, and it has a memory for every target there), a trained one first,
        then the clamp set's own, then the one reading the most nodes.

        Raises:
            InitError: none serves it, naming the clamp set, what each bank reads, and the fix.
        """
        graph, why, usable = ctx.net.graph, [], []
        for key, bank in self.banks.items():
            pair = (key, ctx.clamp)
            if pair not in self._serves:  # depends on the graph only
                self._serves[pair] = memory_serves(graph, key, bank.observe, ctx.clamp)
            reason = self._serves[pair]
            if reason is None:
                rank = (bool(bank.fitted), key == ctx.clamp, len(bank.observe))
                usable.append((rank, bank))
            else:
                why.append(
                    f"the memory trained with clamp set {named_clamp(ctx.net, key)} reads "
                    f"{format_nodes(bank.observe)}, but {reason}"
                )
        if usable:
            return max(usable, key=lambda u: u[0])[1]
        raise no_serving_bank(ctx.net, ctx.clamp, why)

    # --- observations and targets ---------------------------------------------------------
    def observations(self, x: torch.Tensor, ctx: InitContext) -> torch.Tensor:
        """o: the observation nodes' values concatenated, [B, obs_dim]. The nodes are those of
        the bank used under ``ctx.clamp`` (:meth:`bank`), all clamped there."""
        net = ctx.net
        parts = [net.view(x, name).reshape(x.shape[0], -1) for name in self.bank(ctx).observe]
        return torch.cat(parts, dim=1)

    def _targets(self, ctx: InitContext) -> list[str]:
        return list(ctx.plan.memory_targets)

    def _order(self, ctx: InitContext) -> list[int]:
        """The forward sweep below the targets: node indices in topological order."""
        return ctx.plan.forward_order(ctx.clamp | frozenset(ctx.plan.memory_targets))

    def _memory(self, name: str, obs_dim: int, ctx: InitContext) -> HopfieldMemory:
        bank = self.bank(ctx)
        key = f"n{ctx.net.node_index[name]}"  # ModuleDict keys may not contain '.'
        if key not in bank.memories:
            built = sum(len(b.memories) for b in self.banks.values())
            g = torch.Generator().manual_seed(self.seed + built)
            mem = HopfieldMemory(
                obs_dim,
                ctx.net.node(name).size,
                patterns=self.patterns,
                heads=self.heads,
                embed_dim=self.embed_dim,
                beta=self.beta,
                linear=self.linear,
                generator=g,
            ).to(device=ctx.net.device, dtype=ctx.net.dtype)
            bank.memories[key] = mem
            bank.optimizer = memory_optimizer(bank.memories, self.lr)
        found = bank.memories[key]
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

    def memory_loss(
        self,
        x_final: torch.Tensor,
        o: torch.Tensor,
        ctx: InitContext,
        x0: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """L_mem of this minibatch (summed over the batch), differentiable in the memories, at
        ``x0`` = :meth:`initial_states` (computed here when not given)."""
        net = ctx.net
        x0 = self.initial_states(x_final, o, ctx) if x0 is None else x0
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
        bank = self.bank(ctx)  # at evaluation: refuses a clamp set no memory was trained for
        o = self.observations(x, ctx)
        x[:, ctx.free_cols] = 0.0
        full = init_smm(ctx.net.graph, ctx.clamp, "memory")
        retrieved = any(t in bank.fitted for t in targets)
        self._cost = full if retrieved or not targets else full - MEMORY_RETRIEVAL_SMM
        self._kept = None
        order = self._order(ctx)
        if keeps_graph(ctx, self.steps, bank.fitted, targets, order):  # for observe
            with torch.enable_grad():
                x0 = self.initial_states(x, o, ctx)
            x.copy_(x0.detach())
            self._kept = KeptInit(x0, o, ctx.clamp, parameter_versions(ctx.net, bank))
            return
        with torch.no_grad():
            for name in targets:
                if name in bank.fitted:
                    x[:, ctx.net.node(name).cols] = self._memory(name, o.shape[1], ctx)(o)
            ctx.net.forward_sweep(x, order)

    def observe(self, x_final: torch.Tensor, ctx: InitContext) -> None:
        if not ctx.train:
            return
        targets = self._targets(ctx)
        if not targets:
            return
        bank = self.bank(ctx)
        kept, self._kept = self._kept, None
        if kept is not None and not kept.usable(ctx.net, bank, ctx.clamp):
            kept = None
        o = kept.o if kept is not None else self.observations(x_final, ctx).detach()
        mems = {t: self._memory(t, o.shape[1], ctx) for t in targets}
        just_fitted = False
        for name, mem in mems.items():
            if name in bank.fitted:
                continue
            bank.fitted.add(name)
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
        assert bank.optimizer is not None
        batch = o.shape[0] * (ctx.dist.world_size if ctx.dist is not None else 1)
        params = [p for p in bank.memories.parameters() if p.requires_grad]
        with torch.enable_grad():
            for step in range(self.steps):
                x0 = kept.x0 if kept is not None and step == 0 else None
                loss = self.memory_loss(x_final, o, ctx, x0) / batch
                # the weights are held fixed: gradients for the memories only
                grads = torch.autograd.grad(loss, params, allow_unused=True)
                for p, g in zip(params, grads, strict=True):
                    p.grad = g
                if ctx.dist is not None:  # L_mem of the global batch, the same on every rank
                    ctx.dist.all_reduce_many_(p.grad for p in params if p.grad is not None)
                bank.optimizer.step()
                self.last_loss = float(loss.detach())

    def smm(self, ctx: InitContext) -> int:
        """The last :meth:`init`'s cost: one retrieval (3 SMMs) once a memory is fitted, plus
        the forward sweep below the targets (before the first fit the targets start at 0)."""
        if self._cost is not None:
            return self._cost
        return init_smm(ctx.net.graph, ctx.clamp, "memory")

    def extra_parameters(self) -> int:
        return sum(p.numel() for b in self.banks.values() for p in b.memories.parameters())

    def reset(self) -> None:
        """Forget every memory; the clamp sets a learner declared keep an empty bank."""
        prepared = {c: self.banks[c].observe for c in self._prepared if c in self.banks}
        self.banks = {c: MemoryBank(c, observe) for c, observe in prepared.items()}
        self._serves = {}

    def state_dict(self) -> dict[str, object]:
        return {
            "version": 2,
            "banks": [bank.state_dict() for bank in self.banks.values()],
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore :meth:`state_dict`, or the format before memories were kept per clamp set
        (one set of memories reading the clamp set of its first minibatch).

        Raises:
            InitError: a bank for a clamp set this initializer was prepared for that reads
                other nodes than it would now (e.g. an old checkpoint whose memory reads the
                label): retrain.
        """
        if set(state) == {"memory"} and isinstance(state["memory"], dict):
            state = state["memory"]  # the state of an ``auto`` initializer: its memory's
        expected = {c: self.banks[c].observe for c in self._prepared if c in self.banks}
        banks = load_banks(state, expected, heads=self.heads, beta=self.beta, lr=self.lr)
        self.banks, self._serves = banks, {}

    def __repr__(self) -> str:
        observe = "" if self.observe_nodes is None else f", observe={list(self.observe_nodes)!r}"
        return (
            f"MemoryInit(patterns={self.patterns}, heads={self.heads}, "
            f"embed_dim={self.embed_dim}, lr={self.lr}, steps={self.steps}, "
            f"loss={self.loss!r}{', linear=True' if self.linear else ''}{observe})"
        )
