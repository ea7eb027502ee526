"""pcgraph.analysis: clamp sets, cycles, roots, Proposition 3.2, depths and SMM counts.

Small graphs are worked by hand; random graphs are checked against networkx and against
brute-force definitions written here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from pathlib import Path

import networkx as nx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pcgraph.analysis import (
    GraphAnalysis,
    analyze,
    bp_smm,
    check_forward_init,
    check_init,
    find_cycles,
    forward_levels,
    information_depths,
    init_smm,
    memory_targets,
    resolve_clamp,
    roots,
    smm_per_update,
    unreached_nodes,
)
from pcgraph.errors import ClampError, InitError
from pcgraph.schema import GraphSpec, chain

Topology = Callable[[str], Path]


@pytest.fixture
def chain4() -> GraphSpec:
    """x → a → b → y with x the input and y the output."""
    return chain(["x", "a", "b", "y"], [3, 3, 3, 3], roles=["input", "latent", "latent", "output"])


def load(topology: Topology, name: str) -> GraphSpec:
    return GraphSpec.from_yaml(topology(name))


def digraph(edges: list[tuple[str, str]], nodes: list[str] | None = None) -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_nodes_from(nodes or [])
    g.add_edges_from(edges)
    return g


# --- clamp sets ---------------------------------------------------------------------------------


def test_clamp_tasks_follow_the_roles(topology: Topology) -> None:
    spec = load(topology, "mlp5_fashion")
    assert resolve_clamp(spec, "train") == {"x", "y"}  # inputs ∪ outputs
    assert resolve_clamp(spec, "predict") == {"x"}  # inputs
    assert resolve_clamp(spec, "generate") == {"y"}  # outputs
    assert resolve_clamp(spec, "none") == frozenset()
    assert resolve_clamp(spec, None) == frozenset()


def test_clamp_tasks_with_several_outputs(topology: Topology) -> None:
    spec = load(topology, "associative_memory")
    assert resolve_clamp(spec, "generate") == {"upper", "lower"}
    assert resolve_clamp(spec, "predict") == frozenset()  # it has no input node


def test_clamp_by_node_names(chain4: GraphSpec) -> None:
    assert resolve_clamp(chain4, "x, b") == {"x", "b"}
    assert resolve_clamp(chain4, ["a"]) == {"a"}


def test_clamp_naming_an_unknown_node(chain4: GraphSpec) -> None:
    with pytest.raises(ClampError) as info:
        resolve_clamp(chain4, ["x", "q"])
    message = str(info.value)
    assert "unknown node(s) 'q'" in message
    assert "known nodes: x, a, b, y" in message
    assert "train, predict, generate" in message


def test_clamp_string_naming_an_unknown_node(chain4: GraphSpec) -> None:
    with pytest.raises(ClampError, match="'zz'"):
        resolve_clamp(chain4, "x,zz")


# --- the hand-worked chain x → a → b → y --------------------------------------------------------


def test_chain_train_forward_levels_and_cost(chain4: GraphSpec) -> None:
    clamp = {"x", "y"}
    assert forward_levels(chain4, clamp) == {"x": 0, "y": 0, "a": 1, "b": 2}
    assert check_forward_init(chain4, clamp)[0] is True
    assert init_smm(chain4, clamp, "forward") == 2  # a then b
    assert smm_per_update(chain4, clamp, 8, "forward") == 2 * 8 + 2  # 18
    assert bp_smm(chain4) == 2 * 3 - 1  # L = 3 weight layers → 5


def test_chain_predict_sweeps_the_output_too(chain4: GraphSpec) -> None:
    assert forward_levels(chain4, {"x"}) == {"x": 0, "a": 1, "b": 2, "y": 3}
    assert smm_per_update(chain4, {"x"}, 8, "forward") == 16 + 3


def test_chain_generate_needs_memory_for_the_input(chain4: GraphSpec) -> None:
    possible, reason = check_forward_init(chain4, {"y"})
    assert possible is False
    assert "root x is not clamped" in reason
    assert memory_targets(chain4, {"y"}) == ["x"]
    # one Hopfield retrieval softmax(β(oQ + b)Kᵀ)V is 3 sequential matmuls, then a, b forward
    assert init_smm(chain4, {"y"}, "memory") == 3 + 2
    assert smm_per_update(chain4, {"y"}, 8, "memory") == 16 + 5


def test_chain_information_depths(chain4: GraphSpec) -> None:
    assert information_depths(chain4, {"x", "y"}) == {"x": 0, "y": 0, "a": 1, "b": 1}
    assert information_depths(chain4, {"x"}) == {"x": 0, "a": 1, "b": 2, "y": 3}
    assert information_depths(chain4, set()) == {}
    assert unreached_nodes(chain4, set()) == ["x", "a", "b", "y"]


def test_hybrid_cost_is_capped_by_its_depth(chain4: GraphSpec) -> None:
    assert init_smm(chain4, {"x", "y"}, "hybrid", depth=1) == 1
    assert init_smm(chain4, {"x", "y"}, "hybrid", depth=5) == 2


@pytest.mark.parametrize("init", ["zero", "random", "null", "average"])
def test_state_free_initializations_cost_nothing(chain4: GraphSpec, init: str) -> None:
    assert smm_per_update(chain4, {"x", "y"}, 8, init) == 16


def test_negative_T_is_refused(chain4: GraphSpec) -> None:
    with pytest.raises(ValueError, match="T must be"):
        smm_per_update(chain4, {"x", "y"}, -1, "forward")


def test_unclamped_node_downstream_of_free_root_has_no_level() -> None:
    # r (free root) → a ← x (clamped): a cannot be computed until r is known
    g = digraph([("r", "a"), ("x", "a"), ("a", "b")])
    assert forward_levels(g, {"x"}) == {"x": 0}
    assert forward_levels(g, {"x", "r"}) == {"x": 0, "r": 0, "a": 1, "b": 2}


def test_disconnected_node_is_unreached() -> None:
    g = digraph([("x", "a")], nodes=["x", "a", "lonely"])
    assert unreached_nodes(g, {"x"}) == ["lonely"]
    assert information_depths(g, {"x"}) == {"x": 0, "a": 1}


def test_bp_smm_of_graphs_without_layers() -> None:
    assert bp_smm(digraph([], nodes=["a"])) is None
    assert bp_smm(digraph([("a", "b")])) == 1
    assert bp_smm(digraph([("a", "b"), ("b", "a")])) is None  # cyclic: no feed-forward twin


def test_bp_smm_counts_the_longest_path() -> None:
    # x → y directly and x → h1 → h2 → y: the longest path has 3 edges
    g = digraph([("x", "y"), ("x", "h1"), ("h1", "h2"), ("h2", "y")])
    assert bp_smm(g) == 5


# --- the shipped topologies ---------------------------------------------------------------------


def test_mlp5_under_train(topology: Topology) -> None:
    spec = load(topology, "mlp5_fashion")  # 784 → 256 ×4 → 10, 5 weight layers
    clamp = resolve_clamp(spec, "train")
    assert check_forward_init(spec, clamp)[0] is True
    assert forward_levels(spec, clamp) == {"x": 0, "y": 0, "h1": 1, "h2": 2, "h3": 3, "h4": 4}
    assert smm_per_update(spec, clamp, 8, "forward") == 16 + 4  # L − 1 = 4 for the sweep
    assert bp_smm(spec) == 2 * 5 - 1


def test_loop_cycle_blocks_forward_init(topology: Topology) -> None:
    spec = load(topology, "loop")
    assert find_cycles(spec) == [["a", "b", "c"]]
    possible, reason = check_forward_init(spec, resolve_clamp(spec, "train"))
    assert possible is False
    assert "cycle" in reason
    assert "a → b → c → a" in reason
    assert memory_targets(spec, {"x", "y"}) == ["a", "b", "c"]


def test_loop_cycle_blocks_forward_init_for_every_outside_clamp(topology: Topology) -> None:
    spec = load(topology, "loop")
    for clamp in ({"x"}, {"y"}, {"x", "y"}, set()):
        assert check_forward_init(spec, clamp)[0] is False
    # clamping one node of the loop breaks it: x → a, and a → b → c → y is a chain
    assert check_forward_init(spec, {"x", "a", "y"})[0] is True
    assert forward_levels(spec, {"x", "a", "y"}) == {"x": 0, "a": 0, "y": 0, "b": 1, "c": 2}


def test_dag_unclamped_root_names_the_root(topology: Topology) -> None:
    spec = load(topology, "dag_unclamped_root")
    assert nx.is_directed_acyclic_graph(spec.to_networkx())
    possible, reason = check_forward_init(spec, resolve_clamp(spec, "train"))
    assert possible is False
    assert "context" in reason
    assert "cycle" not in reason
    assert memory_targets(spec, {"x", "y"}) == ["context"]


def test_decoder_generate_uses_memory_for_z(topology: Topology) -> None:
    spec = load(topology, "decoder4_fashion")
    clamp = resolve_clamp(spec, "generate")
    assert clamp == {"image"}
    possible, reason = check_forward_init(spec, clamp)
    assert possible is False and "root z" in reason
    assert memory_targets(spec, clamp) == ["z"]
    # memory fills z, then h1, h2, h3 are forward-initialized from it
    assert forward_levels(spec, clamp | {"z"}) == {"z": 0, "image": 0, "h1": 1, "h2": 2, "h3": 3}
    assert smm_per_update(spec, clamp, 8, "memory") == 16 + 3 + 3


def test_fully_connected_groups_is_one_strongly_connected_block(topology: Topology) -> None:
    spec = load(topology, "fully_connected_groups")
    assert find_cycles(spec) == [["g1", "g2", "g3", "g4"]]
    assert memory_targets(spec, {"x", "y"}) == ["g1", "g2", "g3", "g4"]


def test_roots(topology: Topology) -> None:
    assert roots(load(topology, "dag_unclamped_root")) == ["x", "context"]
    assert roots(load(topology, "loop")) == ["x"]
    assert roots(load(topology, "decoder4_fashion")) == ["z"]


# --- check_init ---------------------------------------------------------------------------------


def test_auto_picks_forward_on_a_dag_and_memory_otherwise(
    chain4: GraphSpec, topology: Topology
) -> None:
    assert check_init(chain4, {"x", "y"}, "auto") == "forward"
    assert check_init(load(topology, "loop"), {"x", "y"}, "auto") == "memory"


def test_forward_init_refused_with_the_reason(topology: Topology) -> None:
    with pytest.raises(InitError, match=r"'forward' cannot be used here.*context"):
        check_init(load(topology, "dag_unclamped_root"), {"x", "y"}, "forward")
    with pytest.raises(InitError, match=r"'hybrid' cannot be used here.*a → b → c → a"):
        check_init(load(topology, "loop"), {"x", "y"}, "hybrid")


def test_average_needs_a_clamped_output(chain4: GraphSpec) -> None:
    assert check_init(chain4, {"x", "y"}, "average") == "average"
    with pytest.raises(InitError, match=r"'average' needs labels.*--clamp train"):
        check_init(chain4, {"x"}, "average")
    with pytest.raises(InitError, match="'hybrid' needs labels"):
        check_init(chain4, {"x"}, "hybrid")


@pytest.mark.parametrize("init", ["random", "zero", "null", "memory"])
def test_always_valid_initializations(topology: Topology, init: str) -> None:
    assert check_init(load(topology, "loop"), set(), init) == init


def test_init_names_are_normalised(chain4: GraphSpec) -> None:
    assert check_init(chain4, {"x", "y"}, " Forward ") == "forward"


def test_unknown_init_lists_the_choices(chain4: GraphSpec) -> None:
    with pytest.raises(InitError) as info:
        check_init(chain4, {"x", "y"}, "fwd")
    message = str(info.value)
    assert "unknown initialization 'fwd'" in message
    for name in ("auto", "random", "zero", "null", "forward", "average", "hybrid", "memory"):
        assert name in message


def test_forward_cost_refused_where_forward_is_impossible(topology: Topology) -> None:
    with pytest.raises(InitError, match="context"):
        init_smm(load(topology, "dag_unclamped_root"), {"x", "y"}, "forward")


# --- analyze ------------------------------------------------------------------------------------


def test_analyze_mlp5(topology: Topology) -> None:
    result = analyze(load(topology, "mlp5_fashion"), "train", T=8)
    assert isinstance(result, GraphAnalysis)
    assert result.name == "mlp5_fashion"
    assert result.clamp == ["x", "y"]
    assert result.is_dag and result.cycles == []
    assert result.topological_order == ["x", "h1", "h2", "h3", "h4", "y"]
    assert result.roots == ["x"] and result.unclamped_roots == []
    assert result.forward_init_possible and result.recommended_init == "forward"
    assert result.memory_targets == []
    assert (result.T, result.smm_per_update, result.smm_bp) == (8, 20, 9)
    # information enters from both ends: h1, h4 after 1 step, h2, h3 after 2
    assert result.information_depths == {"x": 0, "y": 0, "h1": 1, "h4": 1, "h2": 2, "h3": 2}
    assert result.unreached == []


def test_analyze_loop(topology: Topology) -> None:
    result = analyze(load(topology, "loop"), "train", T=8)
    assert not result.is_dag and result.topological_order is None
    assert result.cycles == [["a", "b", "c"]]
    assert not result.forward_init_possible and result.recommended_init == "memory"
    assert result.memory_targets == ["a", "b", "c"]
    assert result.smm_per_update == 16 + 3  # one retrieval; nothing left to sweep
    assert result.smm_bp is None


def test_analyze_counts_the_chosen_init(chain4: GraphSpec) -> None:
    assert analyze(chain4, "train", T=4, init="zero").smm_per_update == 8
    assert analyze(chain4, "train", T=4, init="forward").smm_per_update == 8 + 2


def test_analysis_summary_and_dict(topology: Topology) -> None:
    result = analyze(load(topology, "loop"), "train")
    text = result.summary()
    assert "not a DAG" in text and "{a, b, c}" in text and "memory" in text
    as_dict = result.to_dict()
    assert as_dict["cycles"] == [["a", "b", "c"]]
    assert as_dict["forward_init_possible"] is False


# --- properties on random graphs ----------------------------------------------------------------


@st.composite
def random_graphs(draw: st.DrawFn) -> tuple[nx.DiGraph, frozenset[str]]:
    """A random directed graph without self-loops (as a validated spec) and a random clamp set."""
    n = draw(st.integers(1, 8))
    names = [f"n{i}" for i in range(n)]
    pairs = [(u, v) for u in names for v in names if u != v]
    edges = draw(
        st.lists(st.sampled_from(pairs), unique=True, max_size=min(len(pairs), 16))
        if pairs
        else st.just([])
    )
    g = nx.DiGraph(name="random")
    for name in names:
        g.add_node(name, shape=2)
    for u, v in edges:
        g.add_edge(u, v, op="linear")
    clamp = frozenset(draw(st.lists(st.sampled_from(names), unique=True)))
    return g, clamp


def kahn_order(g: nx.DiGraph) -> list[str] | None:
    """A topological order by repeatedly removing parentless nodes; None if a cycle remains."""
    indeg = {n: g.in_degree(n) for n in g.nodes}
    queue = deque(n for n, d in indeg.items() if d == 0)
    order = []
    while queue:
        n = queue.popleft()
        order.append(n)
        for c in g.successors(n):
            indeg[c] -= 1
            if indeg[c] == 0:
                queue.append(c)
    return order if len(order) == g.number_of_nodes() else None


def brute_force_levels(g: nx.DiGraph, clamp: frozenset[str]) -> dict[str, int]:
    """Fixed-point iteration of: level = 0 if clamped, 1 + max(parent levels) once all known."""
    levels = {n: 0 for n in clamp}
    changed = True
    while changed:
        changed = False
        for n in g.nodes:
            parents = list(g.predecessors(n))
            if n in levels or not parents or any(p not in levels for p in parents):
                continue
            levels[n] = 1 + max(levels[p] for p in parents)
            changed = True
    return levels


def bfs_undirected(g: nx.DiGraph, sources: frozenset[str]) -> dict[str, int]:
    dist = {s: 0 for s in sources}
    queue = deque(sources)
    while queue:
        n = queue.popleft()
        for m in (*g.successors(n), *g.predecessors(n)):
            if m not in dist:
                dist[m] = dist[n] + 1
                queue.append(m)
    return dist


def longest_path_edges(g: nx.DiGraph, order: list[str]) -> int:
    length = {n: 0 for n in g.nodes}
    for n in order:
        for c in g.successors(n):
            length[c] = max(length[c], length[n] + 1)
    return max(length.values(), default=0)


@given(random_graphs())
def test_spec_and_networkx_agree_on_random_graphs(case: tuple[nx.DiGraph, frozenset[str]]) -> None:
    g, clamp = case
    spec = GraphSpec.from_networkx(g)
    assert GraphSpec.from_networkx(spec.to_networkx()) == spec
    assert set(spec.to_networkx().edges) == set(g.edges)
    # the reason may show a different concrete cycle (the spec orders edges canonically)
    from_spec, from_graph = analyze(spec, clamp).to_dict(), analyze(g, clamp).to_dict()
    assert from_spec.pop("reason").split(":")[0] == from_graph.pop("reason").split(":")[0]
    assert from_spec == from_graph


@given(random_graphs())
def test_cycles_and_roots_agree_with_networkx(case: tuple[nx.DiGraph, frozenset[str]]) -> None:
    g, _ = case
    sccs = {frozenset(c) for c in nx.strongly_connected_components(g) if len(c) > 1}
    assert {frozenset(c) for c in find_cycles(g)} == sccs
    assert set(roots(g)) == {n for n in g.nodes if g.in_degree(n) == 0}


@given(random_graphs())
def test_topological_order_is_valid(case: tuple[nx.DiGraph, frozenset[str]]) -> None:
    g, clamp = case
    result = analyze(g, clamp)
    assert result.is_dag == nx.is_directed_acyclic_graph(g) == (kahn_order(g) is not None)
    if result.is_dag:
        order = result.topological_order
        assert order is not None and sorted(order) == sorted(g.nodes)
        position = {n: i for i, n in enumerate(order)}
        assert all(position[u] < position[v] for u, v in g.edges)  # every edge goes forward
        assert result.smm_bp == (
            2 * longest_path_edges(g, order) - 1 if g.number_of_edges() else None
        )
    else:
        assert result.topological_order is None and result.smm_bp is None


@given(random_graphs())
def test_proposition_3_2_agrees_with_brute_force(case: tuple[nx.DiGraph, frozenset[str]]) -> None:
    g, clamp = case
    free = [n for n in g.nodes if n not in clamp]
    expected = kahn_order(g.subgraph(free)) is not None and all(g.in_degree(n) > 0 for n in free)
    possible, reason = check_forward_init(g, clamp)
    assert possible == expected
    if not possible:
        for n in free:
            if g.in_degree(n) == 0:
                assert n in reason  # the unclamped root is named
    # forward init is possible exactly when the sweep reaches every node
    assert possible == (set(forward_levels(g, clamp)) == set(g.nodes))


@given(random_graphs())
def test_forward_levels_satisfy_their_recursion(case: tuple[nx.DiGraph, frozenset[str]]) -> None:
    g, clamp = case
    levels = forward_levels(g, clamp)
    assert levels == brute_force_levels(g, clamp)
    for n, level in levels.items():
        if n in clamp:
            assert level == 0
        else:
            assert level == 1 + max(levels[p] for p in g.predecessors(n))


@given(random_graphs())
def test_memory_targets_make_forward_init_possible(case: tuple[nx.DiGraph, frozenset[str]]) -> None:
    g, clamp = case
    targets = memory_targets(g, clamp)
    assert not set(targets) & clamp
    assert check_forward_init(g, clamp | set(targets))[0] is True
    if check_forward_init(g, clamp)[0]:
        assert targets == []


@given(random_graphs())
def test_information_depths_are_undirected_distances(
    case: tuple[nx.DiGraph, frozenset[str]],
) -> None:
    g, clamp = case
    assert information_depths(g, clamp) == bfs_undirected(g, clamp)
    assert set(unreached_nodes(g, clamp)) == set(g.nodes) - set(bfs_undirected(g, clamp))


def test_smm_init_names_are_normalised_and_unknown_ones_refused() -> None:
    from pcgraph.analysis import init_smm
    from pcgraph.errors import InitError

    chain = nx.DiGraph([("x", "a"), ("a", "b"), ("b", "y")])
    # forward on x→a→b→y with {x, y} clamped sweeps a (level 1) and b (level 2): 2 SMMs
    assert init_smm(chain, {"x", "y"}, "Forward") == 2
    assert init_smm(chain, {"x", "y"}, "auto") == 2
    with pytest.raises(InitError, match="unknown initialization 'forwrd'"):
        init_smm(chain, {"x", "y"}, "forwrd")


def test_still_after_sweep_is_every_node_no_clamped_error_reaches() -> None:
    """After a forward sweep only clamped nodes with a prediction carry an error; it reaches
    the free nodes above them (their parents, then theirs) and nothing else."""
    import pcgraph as pc
    from pcgraph.analysis import still_after_sweep

    g = nx.DiGraph([("x", "h1"), ("h1", "y"), ("x", "h2"), ("h2", "z")])
    assert still_after_sweep(g, {"x", "y"}) == ["h2", "z"]  # nothing clamped below h2
    assert still_after_sweep(g, {"x"}) == ["h1", "y", "h2", "z"]  # prediction: all stay
    assert still_after_sweep(g, {"x", "y", "z"}) == []
    # the report says so instead of claiming the error spreads back
    spec = pc.mlp([4, 3, 2])
    text = pc.analyze(spec, "predict", T=4).summary()
    assert "the errors of h1, y stay exactly 0" in text and "spreads back" not in text
