"""Graph analysis: pure functions over networkx (no torch) — cycles, roots, depths, Prop. 3.2, SMMs.

Everything here depends on the graph *and* the clamp set: which nodes are fixed to data decides
whether forward initialization is possible (Proposition 3.2 of the paper) and what it costs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import networkx as nx

from pcgraph.energies import get_energy
from pcgraph.errors import ClampError, InitError
from pcgraph.schema import GraphSpec

__all__ = [
    "CLAMP_TASKS",
    "INIT_RULES",
    "INIT_RULE_LIST",
    "GraphAnalysis",
    "InitRule",
    "analyze",
    "as_digraph",
    "bp_smm",
    "check_forward_init",
    "check_init",
    "describe_cycle",
    "error_front",
    "find_cycles",
    "forward_levels",
    "front_steps",
    "inference_smm",
    "information_depths",
    "init_smm",
    "memory_targets",
    "resolve_auto",
    "resolve_clamp",
    "roots",
    "smm_per_update",
    "unreached_nodes",
]

CLAMP_TASKS = {
    "train": "inputs and outputs (supervised training)",
    "predict": "inputs (prediction)",
    "generate": "outputs (generation / reconstruction)",
    "none": "nothing",
}
# Sequential matmuls of one Hopfield retrieval softmax(β (o Q + b) Kᵀ) V: oQ, ·Kᵀ, ·V.
MEMORY_RETRIEVAL_SMM = 3


def as_digraph(graph: GraphSpec | nx.DiGraph) -> nx.DiGraph:
    """The networkx view of a spec (or the graph itself); a spec is converted once (specs are
    immutable), not at every analysis call — ``analyze`` of a 10,000-node spec asks ~10 times."""
    if not isinstance(graph, GraphSpec):
        return graph
    found = _DIGRAPHS.get(id(graph))
    if found is not None and found[0] is graph:
        return found[1]
    g = graph.to_networkx()
    if len(_DIGRAPHS) > 16:
        _DIGRAPHS.clear()
    _DIGRAPHS[id(graph)] = (graph, g)  # the spec is kept: its id cannot be reused meanwhile
    return g


_DIGRAPHS: dict[int, tuple[GraphSpec, nx.DiGraph]] = {}


def resolve_clamp(
    graph: GraphSpec | nx.DiGraph, clamp: str | Iterable[str] | None
) -> frozenset[str]:
    """Turn a task name or node list into a clamp set.

    Args:
        clamp: ``"train"`` (inputs ∪ outputs), ``"predict"`` (inputs), ``"generate"``
            (outputs), ``"none"``/None, a comma-separated string ``"a,b"``, or node names.

    Raises:
        ClampError: naming unknown nodes and listing the known ones.
    """
    g = as_digraph(graph)
    role = {n: d.get("role", "latent") for n, d in g.nodes(data=True)}
    if clamp is None or clamp == "none":
        return frozenset()
    if isinstance(clamp, str):
        if clamp in CLAMP_TASKS:
            wanted = {"train": {"input", "output"}, "predict": {"input"}, "generate": {"output"}}[
                clamp
            ]
            return frozenset(n for n, r in role.items() if r in wanted)
        names = [c.strip() for c in clamp.split(",") if c.strip()]
    else:
        names = [str(c) for c in clamp]
    unknown = [n for n in names if n not in role]
    if unknown:
        raise ClampError(
            f"clamp set names unknown node(s) {', '.join(map(repr, unknown))}; known nodes: "
            f"{', '.join(role)}; or use a task: {', '.join(CLAMP_TASKS)}"
        )
    return frozenset(names)


def find_cycles(
    graph: GraphSpec | nx.DiGraph, nodes: Iterable[str] | None = None
) -> list[list[str]]:
    """Strongly connected components that contain a cycle, each as a node list in graph order.

    Args:
        nodes: restrict to the subgraph induced by these nodes (e.g. the free nodes).
    """
    g = as_digraph(graph)
    chosen = None if nodes is None else frozenset(nodes)
    key = (id(g), g.number_of_nodes(), g.number_of_edges(), chosen)
    found = _CYCLES.get(key)
    if found is not None and found[0] is g:
        return [list(c) for c in found[1]]
    if chosen is None:
        cycles = _find_cycles(g)
    else:  # a cycle of the subgraph lies inside a strongly connected component of the graph
        cycles = []
        for comp in find_cycles(g):
            inside = [n for n in comp if n in chosen]
            if len(inside) > 1 or (inside and g.has_edge(inside[0], inside[0])):
                cycles.extend(_find_cycles(g.subgraph(inside)))
        order = {n: i for i, n in enumerate(g.nodes)}
        cycles.sort(key=lambda c: order[c[0]])
    if len(_CYCLES) > 64:
        _CYCLES.clear()
    _CYCLES[key] = (g, cycles)
    return [list(c) for c in cycles]


_CYCLES: dict[tuple[object, ...], tuple[nx.DiGraph, list[list[str]]]] = {}


def _find_cycles(g: nx.DiGraph) -> list[list[str]]:
    order = {n: i for i, n in enumerate(g.nodes)}
    loops = {u for u, _ in nx.selfloop_edges(g)}
    cycles = []
    for comp in nx.strongly_connected_components(g):
        if len(comp) > 1 or not loops.isdisjoint(comp):
            cycles.append(sorted(comp, key=order.__getitem__))
    return sorted(cycles, key=lambda c: order[c[0]])


def describe_cycle(graph: GraphSpec | nx.DiGraph, component: list[str]) -> str:
    """One concrete cycle inside a strongly connected component, e.g. ``a → b → c → a``."""
    g = as_digraph(graph).subgraph(component)
    path = [u for u, _ in nx.find_cycle(g, source=component[0])]
    text = " → ".join([*path, path[0]])
    extra = [n for n in component if n not in path]
    return text + (f", with {', '.join(extra)} on other cycles through it" if extra else "")


def roots(graph: GraphSpec | nx.DiGraph) -> list[str]:
    """Nodes without parents (nothing predicts them)."""
    g = as_digraph(graph)
    return [n for n in g.nodes if g.in_degree(n) == 0]


def forward_levels(graph: GraphSpec | nx.DiGraph, clamp: Iterable[str]) -> dict[str, int]:
    """Level of every node in a forward sweep: 0 for clamped nodes, 1 + max over parents otherwise.

    A free node's level is the number of sequential matmuls after which forward initialization
    knows its value. Nodes the sweep cannot reach (on a cycle of free nodes, an unclamped root, or
    downstream of one) are absent.
    """
    g = as_digraph(graph)
    clamped = set(clamp)
    levels = {n: 0 for n in g.nodes if n in clamped}
    # a free node is ready once none of its parents is a free node still unknown
    missing = {
        n: sum(1 for p in g.predecessors(n) if p not in clamped)
        for n in g.nodes
        if n not in clamped
    }
    ready = deque(n for n in missing if missing[n] == 0 and g.in_degree(n) > 0)
    while ready:
        n = ready.popleft()
        levels[n] = 1 + max(levels[p] for p in g.predecessors(n))
        for c in g.successors(n):
            if c in missing and c not in levels:
                missing[c] -= 1
                if missing[c] == 0:
                    ready.append(c)
    return levels


def information_depths(graph: GraphSpec | nx.DiGraph, clamp: Iterable[str]) -> dict[str, int]:
    """Inference steps before information from the clamped data reaches each node.

    Predictions travel along edges and errors against them, one edge per step, so this is the
    undirected distance to the nearest clamped node. Unreachable nodes are absent.
    """
    g = as_digraph(graph).to_undirected(as_view=True)
    sources = [n for n in clamp if n in g]
    if not sources:
        return {}
    return dict(nx.multi_source_dijkstra_path_length(g, sources, weight=None))


def unreached_nodes(graph: GraphSpec | nx.DiGraph, clamp: Iterable[str]) -> list[str]:
    """Nodes that never receive information from the data: no path to any clamped node."""
    depths = information_depths(graph, clamp)
    return [n for n in as_digraph(graph).nodes if n not in depths]


def check_forward_init(graph: GraphSpec | nx.DiGraph, clamp: Iterable[str]) -> tuple[bool, str]:
    """Proposition 3.2: forward init is possible iff the free nodes form a DAG whose roots
    (free nodes without parents) are all clamped — i.e. there are none.

    Returns:
        (possible, reason): the reason names the cycle or the unclamped roots when impossible.
    """
    g = as_digraph(graph)
    clamped = set(clamp)
    free = [n for n in g.nodes if n not in clamped]
    cycles = find_cycles(g, free)
    problems = []
    if cycles:
        shown = "; ".join(describe_cycle(g, c) for c in cycles)
        problems.append(
            f"the free nodes contain a cycle ({shown}), so no node on it can be "
            "computed before the others"
        )
    bare = [n for n in free if g.in_degree(n) == 0]
    if bare:
        problems.append(
            f"root{'s' if len(bare) > 1 else ''} {', '.join(bare)} "
            f"{'are' if len(bare) > 1 else 'is'} not clamped and nothing predicts "
            f"{'them' if len(bare) > 1 else 'it'}; clamp {'them' if len(bare) > 1 else 'it'} "
            "or use memory initialization"
        )
    if problems:
        return False, "forward initialization is impossible: " + "; ".join(problems)
    return True, "the free nodes form a DAG whose roots are all clamped (Proposition 3.2)"


def memory_targets(graph: GraphSpec | nx.DiGraph, clamp: Iterable[str]) -> list[str]:
    """Nodes that a memory initializer must fill: the unclamped roots and every free node on a
    cycle. Once they are known, all other free nodes can be forward-initialized from them."""
    g = as_digraph(graph)
    clamped = set(clamp)
    free = [n for n in g.nodes if n not in clamped]
    on_cycle = {n for c in find_cycles(g, free) for n in c}
    return [n for n in free if g.in_degree(n) == 0 or n in on_cycle]


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


def inference_smm(T: int, *, two_stage: bool = False) -> int:
    """SMMs of T inference steps: a prediction pass and a message pass per gradient evaluation
    (two evaluations per step for a two-stage solver such as Heun)."""
    return (4 if two_stage else 2) * T


def check_init(graph: GraphSpec | nx.DiGraph, clamp: Iterable[str], init: str) -> str:
    """Resolve ``auto`` and refuse an initialization this graph and clamp set cannot use.

    Returns:
        the concrete initialization name.

    Raises:
        InitError: unknown name (listing the valid ones), forward/hybrid where Proposition 3.2
            fails (with its reason), average/hybrid without a clamped output to read labels from.
    """
    rule = _rule(init)
    clamped = set(clamp)
    g = as_digraph(graph)
    if rule.name == "auto":
        return resolve_auto(g, clamped)
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
    """SMMs of one backprop update of the equivalent feed-forward network: 2L − 1."""
    layers = longest_chain(graph)
    return None if layers is None or layers == 0 else 2 * layers - 1


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
        return deepest if rule.cost == "sweep" or depth is None else min(depth, deepest)
    if rule.cost == "memory":
        targets = memory_targets(graph, clamped)
        if not targets:
            return init_smm(graph, clamped, "forward")
        below = forward_levels(graph, clamped | set(targets))
        known = clamped | set(targets)
        deepest = max((v for n, v in below.items() if n not in known), default=0)
        return MEMORY_RETRIEVAL_SMM + deepest
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
    return inference_smm(T) + init_smm(graph, clamp, init, depth=depth)


@dataclass(frozen=True)
class GraphAnalysis:
    """Everything `pcgraph check` reports about a graph under one clamp set."""

    name: str
    clamp: list[str]
    is_dag: bool
    cycles: list[list[str]]
    roots: list[str]
    unclamped_roots: list[str]
    topological_order: list[str] | None
    forward_levels: dict[str, int]
    information_depths: dict[str, int]
    unreached: list[str]
    forward_init_possible: bool
    reason: str
    recommended_init: str
    memory_targets: list[str]
    T: int
    smm_per_update: int
    smm_bp: int | None
    # after a forward sweep: the nodes whose error is still exactly 0 at each step (until none)
    error_front: list[list[str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the stable keys of ``pcgraph check --json``)."""
        return asdict(self)

    def summary(self) -> str:
        """The analysis in plain words."""
        lines = [f"graph {self.name!r} with clamp set {{{', '.join(self.clamp)}}}"]
        if self.is_dag:
            lines.append(f"- a DAG; topological order: {' → '.join(self.topological_order or [])}")
        else:
            shown = "; ".join("{" + ", ".join(c) + "}" for c in self.cycles)
            lines.append(f"- not a DAG: strongly connected groups {shown}")
        lines.append(
            f"- roots: {', '.join(self.roots) or 'none'}"
            + (
                f" (unclamped: {', '.join(self.unclamped_roots)})"
                if self.unclamped_roots
                else " (all clamped)"
            )
        )
        lines.append(
            f"- {self.reason}"
            if not self.forward_init_possible
            else f"- forward initialization is possible: {self.reason}"
        )
        lines.append(
            f"- initialization 'auto' will use: {self.recommended_init}"
            + (
                f" (memory for {', '.join(self.memory_targets)}, forward below)"
                if self.recommended_init == "memory"
                else ""
            )
        )
        if self.information_depths:
            reach = max(self.information_depths.values())
            lines.append(f"- data reaches every connected node after {reach} inference step(s)")
        if self.forward_init_possible and self.error_front:
            full = len(self.error_front)
            lines.append(
                "- after forward init the error spreads back from the clamped outputs one edge "
                f"per step: every weight gets a gradient from T = {full} on"
            )
            if full > self.T:
                quiet = self.error_front[self.T]
                lines.append(
                    f"- at T={self.T} the weights into {', '.join(quiet)} get none (their errors "
                    "are still 0): raise T, or use hybrid or average init"
                )
        if self.unreached:
            lines.append(
                f"- WARNING: {', '.join(self.unreached)} never receive information "
                "from the clamped nodes"
            )
        lines.append(
            f"- cost per weight update at T={self.T}: {self.smm_per_update} sequential "
            "matrix multiplications"
            + (f" (backprop: {self.smm_bp})" if self.smm_bp is not None else "")
        )
        return "\n".join(lines)


def analyze(
    graph: GraphSpec | nx.DiGraph,
    clamp: str | Iterable[str] | None = "train",
    *,
    T: int = 8,
    init: str = "auto",
) -> GraphAnalysis:
    """Analyse ``graph`` under ``clamp`` (a task name or node names); see :class:`GraphAnalysis`.

    Args:
        T: inference steps, for the SMM count.
        init: the initialization whose cost to count; ``auto`` picks forward when Proposition 3.2
            allows it, memory otherwise.
    """
    g = as_digraph(graph)
    clamped = resolve_clamp(g, clamp)
    order = {n: i for i, n in enumerate(g.nodes)}
    is_dag = nx.is_directed_acyclic_graph(g)
    possible, reason = check_forward_init(g, clamped)
    recommended = resolve_auto(g, clamped)
    chosen = recommended if init == "auto" else init
    all_roots = roots(g)
    return GraphAnalysis(
        name=str(g.graph.get("name", "graph")),
        clamp=sorted(clamped, key=order.__getitem__),
        is_dag=is_dag,
        cycles=find_cycles(g),
        roots=all_roots,
        unclamped_roots=[r for r in all_roots if r not in clamped],
        topological_order=list(nx.lexicographical_topological_sort(g, key=order.__getitem__))
        if is_dag
        else None,
        forward_levels=forward_levels(g, clamped),
        information_depths=information_depths(g, clamped),
        unreached=unreached_nodes(g, clamped),
        forward_init_possible=possible,
        reason=reason,
        recommended_init=recommended,
        memory_targets=memory_targets(g, clamped),
        T=T,
        smm_per_update=smm_per_update(g, clamped, T, chosen),
        smm_bp=bp_smm(g),
        error_front=error_front(g, clamped) if possible else [],
    )


def front_steps(
    graph: GraphSpec | nx.DiGraph,
    clamp: Iterable[str],
    steps: int,
    *,
    swept: Iterable[str] | None = None,
) -> list[tuple[frozenset[str], frozenset[str]]]:
    """The rule of the error front after a forward sweep, for evaluations t = 0 … ``steps``:
    (nodes whose error is still exactly 0, free nodes moved so far). A free node moves once
    its own error or a child's is non-zero (SGD, momentum and Adam all leave a node with zero
    gradient history where it is); a swept node keeps ε = 0 while neither it nor a parent has
    moved; a free node of a held energy (cross-entropy, Bernoulli) counts as moved from the
    start, since inference rewrites it at every evaluation.

    Args:
        swept: the nodes the sweep left at ε = 0 (default: every free node with parents that
            is not of a held energy, i.e. a full forward initialization).
    """
    g = as_digraph(graph)
    clamped = set(clamp)
    free = [n for n in g.nodes if n not in clamped]
    held = {
        n for n in free if g.in_degree(n) and get_energy(g.nodes[n].get("energy", "gaussian")).held
    }
    done = {n for n in free if g.in_degree(n)} - held if swept is None else set(swept)
    moved = set(held)
    out: list[tuple[frozenset[str], frozenset[str]]] = []
    for _ in range(steps + 1):
        zero = frozenset(
            n for n in done if n not in moved and not any(p in moved for p in g.pred[n])
        )
        out.append((zero, frozenset(moved)))
        moved |= {
            n
            for n in free
            if (g.in_degree(n) and n not in zero) or any(c not in zero for c in g.succ[n])
        }
    return out


def error_front(graph: GraphSpec | nx.DiGraph, clamp: Iterable[str]) -> list[list[str]]:
    """After a full forward sweep, the nodes whose error is still exactly 0 at inference step
    t = 0, 1, … (in graph order), until none is (:func:`front_steps`; the engine's
    ``ClampPlan.quiet_schedule`` follows the same rule). An edge into a node of entry T gets no
    weight gradient from T inference steps."""
    g = as_digraph(graph)
    order = {n: i for i, n in enumerate(g.nodes)}
    out: list[list[str]] = []
    last: frozenset[str] | None = None
    # each step moves at least one more node or none ever will: at most one entry per node
    for zero, moved in front_steps(g, clamp, g.number_of_nodes()):
        if not zero or moved == last:
            break  # nothing left at 0, or nothing more can move (those stay 0 for ever)
        out.append(sorted(zero, key=order.__getitem__))
        last = moved
    return out
