"""What each initialization needs and what a weight update costs, in sequential matrix
multiplications (SMMs): the initializer rules, ``auto``, ``check_init`` and the SMM counts."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import networkx as nx

from pcgraph.analysis.graph import as_digraph, check_forward_init, forward_levels, memory_targets
from pcgraph.analysis.memory import check_memory_evaluation, evaluation_clamp
from pcgraph.errors import InitError
from pcgraph.ops import OPS
from pcgraph.schema import GraphSpec

__all__ = [
    "INIT_RULES",
    "INIT_RULE_BY_NAME",
    "INIT_RULE_LIST",
    "MEMORY_RETRIEVAL_SMM",
    "InitRule",
    "bp_smm",
    "check_init",
    "inference_smm",
    "init_smm",
    "longest_chain",
    "op_smm",
    "resolve_auto",
    "smm_per_update",
]

# Sequential matmuls of one Hopfield retrieval softmax(β (o Q + b) Kᵀ) V: oQ, ·Kᵀ, ·V.
MEMORY_RETRIEVAL_SMM = 3


@dataclass(frozen=True)
class InitRule:
    """What an initialization needs of the graph and what it costs, declared once (no torch):
    ``check_init``, ``init_smm`` and the docs' table are derived from these.

    Attributes:
        name: the registry name (as in :data:`pcgraph.init.INITIALIZERS`).
        summary: one line for the docs and messages.
        needs_forward: usable only where Proposition 3.2 holds (a forward sweep).
        needs_labels: reads class labels, so an output node must be clamped.
        cost: SMMs before inference — ``none``, ``sweep`` (the deepest forward level),
            ``partial_sweep`` (min(K, that)), or ``memory`` (a retrieval plus the sweep below
            its targets).
    """

    name: str
    summary: str
    needs_forward: bool = False
    needs_labels: bool = False
    cost: str = "none"


INIT_RULE_LIST = (
    InitRule("auto", "forward when Proposition 3.2 allows it, memory otherwise", cost="auto"),
    InitRule("random", "x ~ N(mean, std²)"),
    InitRule("zero", "x = 0"),
    InitRule("null", "keep the last batch's converged states"),
    InitRule(
        "forward",
        "x_i = μ_i in topological order from the clamped roots",
        needs_forward=True,
        cost="sweep",
    ),
    InitRule(
        "average",
        "class means of the last batch's converged states (stream-aligned batches)",
        needs_labels=True,
    ),
    InitRule(
        "hybrid",
        "forward up to depth K, class averages above",
        needs_forward=True,
        needs_labels=True,
        cost="partial_sweep",
    ),
    InitRule(
        "memory",
        "a Hopfield memory retrieves the states from the observations",
        cost="memory",
    ),
)
INIT_RULE_BY_NAME = {r.name: r for r in INIT_RULE_LIST}
# name → summary (the docs' table and the messages' list of choices)
INIT_RULES: dict[str, str] = {r.name: r.summary for r in INIT_RULE_LIST}


def _rule(init: str) -> InitRule:
    from pcgraph.registry import normalize_name

    rule = INIT_RULE_BY_NAME.get(normalize_name(init))
    if rule is None:
        raise InitError(f"unknown initialization {init!r}; valid choices: {', '.join(INIT_RULES)}")
    return rule


def resolve_auto(graph: GraphSpec | nx.DiGraph, clamp: Iterable[str]) -> str:
    """What ``auto`` means under ``clamp``: forward where Proposition 3.2 allows it, else memory."""
    return "forward" if check_forward_init(graph, set(clamp))[0] else "memory"


def inference_smm(T: int, *, two_stage: bool = False, per_pass: int = 1) -> int:
    """SMMs of T inference steps: a prediction pass and a message pass per gradient evaluation
    (two evaluations per step for a two-stage solver such as Heun), each pass ``per_pass``
    sequential products deep (:func:`op_smm`)."""
    return (4 if two_stage else 2) * T * per_pass


def op_smm(graph: GraphSpec | nx.DiGraph) -> int:
    """Sequential products of one pass over every edge in parallel: the deepest op's (1 for
    linear and conv; a registered module declares its own, ``register_op(..., smm=k)``). A
    sweep level costs this too, which is exact when all edges agree and an upper bound
    otherwise."""
    g = as_digraph(graph)
    deepest = 1
    for _, _, op in g.edges(data="op", default="linear"):
        if op in OPS:
            deepest = max(deepest, OPS.get(op).smm)
    return deepest


def check_init(graph: GraphSpec | nx.DiGraph, clamp: Iterable[str], init: str) -> str:
    """Resolve ``auto`` and refuse an initialization this graph and clamp set cannot use.

    Returns:
        the concrete initialization name.

    Raises:
        InitError: unknown name (listing the valid ones), forward/hybrid where Proposition 3.2
            fails (with its reason), average/hybrid without a clamped output to read labels from,
            a memory (``memory``, or ``auto`` where forward init is impossible in training or
            at evaluation) that evaluation would need for nodes training never gives one
            (:func:`pcgraph.analysis.memory.check_memory_evaluation`).
    """
    rule = _rule(init)
    clamped = set(clamp)
    g = as_digraph(graph)
    if rule.name == "auto":
        evaluation = evaluation_clamp(g, clamped)
        if any(resolve_auto(g, c) == "memory" for c in (clamped, evaluation)):
            check_memory_evaluation(g, clamped)
        return resolve_auto(g, clamped)
    if rule.cost == "memory":
        check_memory_evaluation(g, clamped)
    possible, reason = check_forward_init(g, clamped)
    if rule.needs_forward and not possible:
        raise InitError(f"initialization {rule.name!r} cannot be used here: {reason}")
    if rule.needs_labels:
        outputs = [n for n, d in g.nodes(data=True) if d.get("role") == "output" and n in clamped]
        if not outputs:
            raise InitError(
                f"initialization {rule.name!r} needs labels: it averages states per class, so an "
                "output node must be clamped (use --clamp train)"
            )
    return rule.name


def longest_chain(graph: GraphSpec | nx.DiGraph) -> int | None:
    """Number of edges on the longest path of a DAG (its layer count L); None if cyclic."""
    g = as_digraph(graph)
    if not nx.is_directed_acyclic_graph(g):
        return None
    return int(nx.dag_longest_path_length(g)) if g.number_of_edges() else 0


def bp_smm(graph: GraphSpec | nx.DiGraph) -> int | None:
    """SMMs of one backprop update of the equivalent feed-forward network: 2L − 1, with L the
    longest chain counted in sequential products (an op of ``smm=k`` counts k)."""
    layers = longest_chain(graph)
    if layers is None or layers == 0:
        return None
    g = as_digraph(graph)
    if op_smm(g) > 1:
        weighted = nx.DiGraph()
        for u, v, op in g.edges(data="op", default="linear"):
            weighted.add_edge(u, v, smm=OPS.get(op).smm if op in OPS else 1)
        layers = int(nx.dag_longest_path_length(weighted, weight="smm"))
    return 2 * layers - 1


def init_smm(
    graph: GraphSpec | nx.DiGraph, clamp: Iterable[str], init: str, *, depth: int | None = None
) -> int:
    """Sequential matmuls an initialization spends before inference starts (memoized per
    (graph, clamp set, init, depth): the training loop asks once per update).

    forward: the deepest level of its sweep; hybrid(K): min(K, that); memory: one retrieval
    plus the forward sweep below the targets; others (zero, random, null, average): 0;
    ``auto``: forward where Proposition 3.2 allows it, memory otherwise.

    Raises:
        InitError: an unknown initialization name (listing the valid ones).
    """
    size = (
        (len(graph.nodes), len(graph.edges))
        if isinstance(graph, GraphSpec)
        else (graph.number_of_nodes(), graph.number_of_edges())
    )  # a DiGraph edited in between gets a new entry
    key = (id(graph), size, frozenset(clamp), init, depth)
    found = _INIT_SMM.get(key)
    if found is not None and found[0] is graph:
        return found[1]
    cost = _init_smm(graph, frozenset(clamp), init, depth=depth)
    if len(_INIT_SMM) > 256:
        _INIT_SMM.clear()
    _INIT_SMM[key] = (graph, cost)  # the graph is kept: its id cannot be reused meanwhile
    return cost


_INIT_SMM: dict[tuple[object, ...], tuple[object, int]] = {}


def _init_smm(
    graph: GraphSpec | nx.DiGraph, clamp: frozenset[str], init: str, *, depth: int | None
) -> int:
    clamped = set(clamp)
    rule = _rule(init)
    if rule.cost == "auto":
        rule = INIT_RULE_BY_NAME[resolve_auto(graph, clamped)]
    if rule.cost in ("sweep", "partial_sweep"):
        ok, reason = check_forward_init(graph, clamped)
        if not ok:
            raise InitError(reason)
        free_levels = [v for n, v in forward_levels(graph, clamped).items() if n not in clamped]
        deepest = max(free_levels, default=0)
        levels = deepest if rule.cost == "sweep" or depth is None else min(depth, deepest)
        return levels * op_smm(graph)
    if rule.cost == "memory":
        targets = memory_targets(graph, clamped)
        if not targets:
            return init_smm(graph, clamped, "forward")
        below = forward_levels(graph, clamped | set(targets))
        known = clamped | set(targets)
        deepest = max((v for n, v in below.items() if n not in known), default=0)
        return MEMORY_RETRIEVAL_SMM + deepest * op_smm(graph)
    return 0


def smm_per_update(
    graph: GraphSpec | nx.DiGraph,
    clamp: Iterable[str],
    T: int,
    init: str,
    *,
    depth: int | None = None,
) -> int:
    """SMMs of one PC weight update: 2 per inference step (predictions, then errors) + the init."""
    if T < 0:
        raise ValueError(f"T must be ≥ 0, got {T}")
    return inference_smm(T, per_pass=op_smm(graph)) + init_smm(graph, clamp, init, depth=depth)
