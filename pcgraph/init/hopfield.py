"""The parts of Hopfield-memory initialization (:mod:`pcgraph.init.memory`): the retrieval layer
softmax(β (o Q + b) Kᵀ) V, optionally with a linear path o W beside it (:class:`HopfieldMemory`),
the memories of one training clamp set with their optimizer (:class:`MemoryBank`), their
checkpoint form, and the checks of the options."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from pcgraph.analysis.memory import format_nodes
from pcgraph.compiler.network import PCNetwork
from pcgraph.errors import InitError

__all__ = [
    "HopfieldMemory",
    "MemoryBank",
    "bank_entries",
    "check_beta",
    "check_heads",
    "check_whole",
    "load_bank",
    "load_banks",
    "memory_optimizer",
    "named_clamp",
    "no_serving_bank",
]


def check_whole(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InitError(f"memory: {name} must be a whole number ≥ {low}, got {value!r}")


def check_heads(heads: int, embed_dim: int) -> None:
    if embed_dim % heads:
        raise InitError(
            f"memory: heads={heads} must divide embed_dim={embed_dim} (each head gets "
            f"embed_dim / heads dimensions); e.g. embed_dim={heads * max(1, embed_dim // heads)}"
        )


def check_beta(beta: float | None) -> None:
    ok = beta is None or (
        isinstance(beta, int | float) and not isinstance(beta, bool) and 0 < beta < math.inf
    )
    if not ok:
        raise InitError(
            f"memory: beta (the inverse temperature β) must be a finite number > 0, got "
            f"{beta!r}; None uses 1/√(embed_dim / heads)"
        )


class HopfieldMemory(nn.Module):
    """softmax(β (o Q + b) Kᵀ) V with ``heads`` heads whose attentions are averaged, plus o W
    when ``linear``.

    The retrieval is a convex combination of the M stored patterns (rows of V): alone it returns
    a blend of prototypes, not a state that follows each observation's own detail. The linear
    path o W (zero at start; fitted with V on the first minibatch) is an amortized linear
    estimate beside it, read in parallel with the query o Q, so it adds no sequential matrix
    multiplication (docs/initializations.md, "Memory capacity").

    Args:
        obs_dim: size of the observation vector o.
        out_dim: size of the retrieved state (the target node).
        patterns: M, the number of stored patterns (rows of K and V).
        heads, embed_dim: attention heads and total query/key width (divisible by heads).
        beta: inverse temperature β; default 1/√(embed_dim / heads).
        linear: add the linear path o W (W: [obs_dim, out_dim]).

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
        linear: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        for name, value in (
            ("obs_dim", obs_dim),
            ("out_dim", out_dim),
            ("patterns", patterns),
            ("heads", heads),
            ("embed_dim", embed_dim),
        ):
            check_whole(name, value, 1)
        check_heads(heads, embed_dim)
        check_beta(beta)
        self.heads, self.head_dim = heads, embed_dim // heads
        self.beta = beta if beta is not None else 1.0 / math.sqrt(self.head_dim)
        g = generator
        self.query = nn.Parameter(torch.randn(obs_dim, embed_dim, generator=g) / math.sqrt(obs_dim))
        self.bias = nn.Parameter(torch.zeros(embed_dim))
        self.keys = nn.Parameter(torch.randn(patterns, embed_dim, generator=g))
        self.values = nn.Parameter(torch.zeros(patterns, out_dim))
        self.linear = nn.Parameter(torch.zeros(obs_dim, out_dim)) if linear else None

    @staticmethod
    def standardize(o: torch.Tensor) -> torch.Tensor:
        """Each observation vector at mean 0 and standard deviation 1."""
        return (o - o.mean(-1, keepdim=True)) / (o.std(-1, keepdim=True) + 1e-6)

    def attention(self, o: torch.Tensor) -> torch.Tensor:
        """softmax(β q Kᵀ) averaged over heads: [B, M]."""
        o = self.standardize(o)
        q = (o @ self.query + self.bias).view(o.shape[0], self.heads, self.head_dim)
        k = self.keys.view(self.keys.shape[0], self.heads, self.head_dim)
        scores = torch.einsum("bhe,mhe->bhm", q, k) * self.beta
        return scores.softmax(-1).mean(1)

    def forward(self, o: torch.Tensor) -> torch.Tensor:
        out = self.attention(o) @ self.values
        return out if self.linear is None else out + o @ self.linear

    @torch.no_grad()
    def fit_values(self, o: torch.Tensor, states: torch.Tensor) -> None:
        """V = A⁺ H (with the linear path: [V; W] = [A, o]⁺ H, the least-norm solution):
        retrieval on ``o`` then reproduces ``states`` (exactly when M ≥ B and A has full row
        rank)."""
        a = self.attention(o).double()
        if self.linear is not None:
            a = torch.cat([a, o.double()], dim=1)
        vw = torch.linalg.pinv(a) @ states.double()
        m = self.values.shape[0]
        self.values.copy_(vw[:m].to(self.values.dtype))
        if self.linear is not None:
            self.linear.copy_(vw[m:].to(self.linear.dtype))


class MemoryBank:
    """The memories learned under one training clamp set: one Hopfield memory per target.

    Attributes:
        clamp: the training clamp set.
        observe: the observation nodes (graph order), clamped in training and at evaluation.
        memories: one :class:`HopfieldMemory` per target, keyed ``n<node index>`` (a
            ModuleDict key may not contain '.').
        fitted: targets whose first minibatch has been handled.
        optimizer: Adam over ``memories`` (None before the first memory).
    """

    def __init__(self, clamp: frozenset[str], observe: Sequence[str]) -> None:
        self.clamp, self.observe = clamp, tuple(observe)
        self.memories = nn.ModuleDict()
        self.fitted: set[str] = set()
        self.optimizer: torch.optim.Optimizer | None = None

    def memory(self, net: PCNetwork, name: str) -> HopfieldMemory:
        """The memory of target ``name`` (KeyError before it is built)."""
        found = self.memories[f"n{net.node_index[name]}"]
        assert isinstance(found, HopfieldMemory)
        return found

    def state_dict(self) -> dict[str, object]:
        """The bank as a checkpoint entry (:func:`load_bank` reads it back)."""
        return {
            "clamp": sorted(self.clamp),
            "observe": list(self.observe),
            "memories": {k: m.state_dict() for k, m in self.memories.items()},
            "fitted": sorted(self.fitted),
            "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
        }

    def __repr__(self) -> str:
        return (
            f"MemoryBank(clamp={format_nodes(sorted(self.clamp))}, "
            f"observe={format_nodes(self.observe)}, memories={len(self.memories)})"
        )


def load_bank(entry: object, *, heads: int, beta: float | None, lr: float) -> MemoryBank:
    """A bank from :meth:`MemoryBank.state_dict` (its memories in their stored dtype)."""
    if not isinstance(entry, dict) or not {"clamp", "observe", "memories"} <= set(entry):
        raise InitError("memory state: each bank needs 'clamp', 'observe' and 'memories'")
    bank = MemoryBank(frozenset(entry["clamp"]), list(entry["observe"]))
    memories = entry["memories"]
    assert isinstance(memories, dict)
    for key, tensors in memories.items():
        obs_dim, embed = tensors["query"].shape
        patterns, out_dim = tensors["values"].shape
        mem = HopfieldMemory(
            obs_dim,
            out_dim,
            patterns=patterns,
            heads=heads,
            embed_dim=embed,
            beta=beta,
            linear="linear" in tensors,
        )
        # in the stored dtype before loading: a float64 memory loaded into float32
        # parameters would be rounded
        mem = mem.to(device=tensors["values"].device, dtype=tensors["values"].dtype)
        mem.load_state_dict(tensors)
        bank.memories[key] = mem
    bank.fitted = set(entry.get("fitted") or [])
    if len(bank.memories):
        bank.optimizer = memory_optimizer(bank.memories, lr)
        opt_state = entry.get("optimizer")
        if isinstance(opt_state, dict):
            bank.optimizer.load_state_dict(opt_state)
    return bank


def memory_optimizer(memories: nn.Module, lr: float) -> torch.optim.Optimizer:
    """The memories' own Adam, fused where pcgraph's fast paths allow it (the fused kernel
    computes torch's default update to rounding: :func:`pcgraph.engine.weights.fuse_optimizer`)."""
    from pcgraph.engine.weights import fuse_optimizer  # here: the engine imports this package

    optimizer = torch.optim.Adam(memories.parameters(), lr=lr)
    fuse_optimizer(optimizer)
    return optimizer


def bank_entries(state: dict[str, object]) -> list[object]:
    """The bank entries of a MemoryInit checkpoint: version 2's list, or the one bank of the
    format before memories were kept per clamp set (its memories read the clamp set of their
    first minibatch)."""
    banks = state.get("banks")
    if banks is None:  # version 1: {"memories", "fitted", "obs_nodes", "optimizer"}
        obs = state.get("obs_nodes")
        memories = state.get("memories") or {}
        banks = []
        if isinstance(obs, list | tuple) and obs:
            banks = [
                {
                    "clamp": list(obs),
                    "observe": list(obs),
                    "memories": memories,
                    "fitted": state.get("fitted") or [],
                    "optimizer": state.get("optimizer"),
                }
            ]
        elif memories:
            raise InitError("memory state: memories without their observation nodes")
    if not isinstance(banks, list):
        raise InitError(f"memory state: 'banks' must be a list, got {type(banks).__name__}")
    return banks


def load_banks(
    state: dict[str, object],
    expected: dict[frozenset[str], tuple[str, ...]],
    *,
    heads: int,
    beta: float | None,
    lr: float,
) -> dict[frozenset[str], MemoryBank]:
    """The banks of a memory's state (:func:`bank_entries`), one per clamp set, and an empty
    bank for each clamp set in ``expected`` (clamp set → the nodes its memory reads) that the
    state has none for.

    Raises:
        InitError: a bank that reads other nodes than ``expected`` says for its clamp set.
    """
    loaded = {}
    for entry in bank_entries(state):
        bank = load_bank(entry, heads=heads, beta=beta, lr=lr)
        want = expected.get(bank.clamp)
        if want is not None and want != bank.observe:
            raise InitError(
                f"memory state: its memory for clamp set {format_nodes(sorted(bank.clamp))} "
                f"reads {format_nodes(bank.observe)}, but this learner's memory reads "
                f"{format_nodes(want)} (nodes clamped in training and at evaluation; a "
                "checkpoint from before memories were kept per clamp set may read the "
                "label): retrain, or load it into a MemoryInit(observe=...) that matches"
            )
        loaded[bank.clamp] = bank
    for clamp, observe in expected.items():
        loaded.setdefault(clamp, MemoryBank(clamp, observe))
    return loaded


def named_clamp(net: PCNetwork, clamp: frozenset[str]) -> str:
    """A clamp set in graph order, as the messages write it."""
    return format_nodes(n.name for n in net.nodes if n.name in clamp)


def no_serving_bank(net: PCNetwork, clamp: frozenset[str], why: list[str]) -> InitError:
    """The error of a memory initialization with no bank for ``clamp`` at evaluation: why each
    bank cannot serve it, and the fix."""
    here = named_clamp(net, clamp)
    return InitError(
        f"memory initialization has no memory for clamp set {here}: "
        + ("; ".join(why) if why else "it has not been trained under any clamp set")
        + ". A memory learns under the clamp set it is trained with: train with clamp set "
        f"{here} first (PCLearner(net, clamp={sorted(clamp)!r}, init=...), sharing the "
        "network and this initializer), or initialize this query without a memory: "
        "learner.query(observed, init='zero') (or 'random')"
    )
