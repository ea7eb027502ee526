"""pcgraph.compiler.plan: the clamp plan agrees with the pure analysis and with the layout."""

from __future__ import annotations

import networkx as nx
import torch
from hypothesis import HealthCheck, given, settings
from test_analysis import random_graphs  # the same random graphs and clamp sets

import pcgraph as pc
from pcgraph.analysis import check_forward_init, forward_levels, memory_targets
from pcgraph.compiler.plan import clamp_plan
from pcgraph.schema.io import spec_from_networkx


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graphs())
def test_plan_agrees_with_the_analysis(case: tuple[nx.DiGraph, frozenset[str]]) -> None:
    g, clamp = case
    net = pc.compile(spec_from_networkx(g), seed=0, backend="dense")
    plan = clamp_plan(net, clamp)
    assert clamp_plan(net, clamp) is plan  # built once, cached
    assert [net.nodes[i].name for i in plan.free] == [n for n in g.nodes if n not in clamp]
    expected_cols = torch.zeros(net.state_size, dtype=torch.bool)
    for i in plan.free:
        expected_cols[net.nodes[i].cols] = True
    assert torch.equal(plan.free_cols, expected_cols)
    assert (plan.forward_possible, plan.forward_reason) == check_forward_init(net.graph, clamp)
    assert list(plan.memory_targets) == memory_targets(net.graph, clamp)
    # the forward order: every reachable free node once, parents before children
    levels = forward_levels(net.graph, clamp)
    order = plan.forward_order()
    assert sorted(order) == sorted(net.node_index[n] for n in levels if n not in clamp)
    position = {i: k for k, i in enumerate(order)}
    for u, v in net.graph.edges:
        iu, iv = net.node_index[u], net.node_index[v]
        if iu in position and iv in position:
            assert position[iu] < position[iv]
    depth1 = plan.forward_order(max_level=1)
    assert set(depth1) == {
        net.node_index[n] for n, lv in levels.items() if lv <= 1 and n not in clamp
    }


def test_the_training_loop_resolves_its_clamp_set_once() -> None:
    net = pc.compile(pc.mlp([5, 4, 3]), seed=0)
    clamp = net.resolve_clamp("train")
    plan = clamp_plan(net, clamp)
    assert net.resolve_clamp(clamp) is clamp  # passed back: not resolved again
    learner = pc.PCLearner(net, init="forward", T=2)
    assert learner.context(learner.clamp, train=True).plan is plan
