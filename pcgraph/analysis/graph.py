"""Graph analysis under a clamp set: cycles, roots, forward levels and depths, Proposition 3.2,
the memory targets and the error front after a forward sweep (networkx only, no torch)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import networkx as nx

from pcgraph.energies import get_energy
from pcgraph.errors import ClampError
from pcgraph.schema import GraphSpec

__all__ = [
    "CLAMP_TASKS",
    "as_digraph",
    "check_forward_init",
    "describe_cycle",
    "error_front",
    "find_cycles",
    "forward_levels",
    "front_steps",
    "information_depths",
    "memory_targets",
    "resolve_clamp",
    "roots",
    "still_after_sweep",
    "unreached_nodes",
]

CLAMP_TASKS = {
    "train": "inputs and outputs (supervised training)",
    "predict": "inputs (prediction)",
    "generate": "outputs (generation / reconstruction)",
    "none": "nothing",
}


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

    A free root with a prior (½ p ‖x − m‖²) has an error of its own, so it counts as moved
    from the start, as a held node does.

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
    # a free root with a prior carries an error of its own from the start: it may move at once
    priors = {n for n in free if not g.in_degree(n) and g.nodes[n].get("prior") is not None}
    moved = set(held) | priors
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


def still_after_sweep(graph: GraphSpec | nx.DiGraph, clamp: Iterable[str]) -> list[str]:
    """The free nodes with a prediction whose error a full forward sweep leaves at exactly 0
    for every inference step (graph order), so that inference never moves them and the weights
    into them get no gradient. After the sweep only clamped nodes with a prediction carry an
    error; a free node moves once it or a child carries one, and a node carries one once it or
    a parent has moved (a held node too: it sits at mean(μ) while μ is unchanged). Under a
    prediction clamp set (inputs only) that is every free node."""
    g = as_digraph(graph)
    clamped = set(clamp)
    free = [n for n in g.nodes if n not in clamped]
    carrying = {n for n in clamped if g.in_degree(n)}
    moved: set[str] = set()
    while True:
        grown = {n for n in free if n in carrying or any(c in carrying for c in g.succ[n])}
        carrying |= {n for n in free if g.in_degree(n) and (n in grown or grown & set(g.pred[n]))}
        if grown <= moved:
            break
        moved |= grown
    return [n for n in free if g.in_degree(n) and n not in carrying]


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
