"""Node positions for drawing a graph: forward depth left→right, cycles as rings.

The strongly connected components are condensed into a DAG; each component sits in the layer of
its longest-path depth from the roots (``networkx.multipartite_layout``'s idea, with depth as the
subset). A DAG is therefore drawn layer by layer, and a group of nodes on cycles is drawn as a
ring (a shell layout) inside its layer, so the flow of predictions still reads left to right.
"""

from __future__ import annotations

import math

import networkx as nx

from pcgraph.analysis import find_cycles
from pcgraph.schema import GraphSpec

__all__ = ["Position", "graph_layout", "layer_depths"]

Position = tuple[float, float]
# Distances in data units: between layers, and between components stacked in one layer.
_LAYER_GAP = 1.0
_STACK_GAP = 0.9
# Chord between neighbours on a ring.
_RING_CHORD = 1.0


def _components(spec: GraphSpec) -> list[list[str]]:
    """Strongly connected components in node order, each listed in node order."""
    order = {n: i for i, n in enumerate(spec.node_names)}
    comps = [
        sorted(c, key=order.__getitem__)
        for c in nx.strongly_connected_components(spec.to_networkx())
    ]
    return sorted(comps, key=lambda c: order[c[0]])


def layer_depths(spec: GraphSpec) -> dict[str, int]:
    """Longest-path depth of each node from the roots, nodes on a common cycle sharing one.

    For a DAG this is the layer index: 0 for roots, 1 + max over parents otherwise.
    """
    comps = _components(spec)
    comp_of = {n: k for k, c in enumerate(comps) for n in c}
    cond = nx.DiGraph()
    cond.add_nodes_from(range(len(comps)))
    cond.add_edges_from(
        (comp_of[e.source], comp_of[e.target])
        for e in spec.edges
        if comp_of[e.source] != comp_of[e.target]
    )
    depth: dict[int, int] = {}
    for k in nx.topological_sort(cond):
        depth[k] = 1 + max((depth[p] for p in cond.predecessors(k)), default=-1)
    return {n: depth[comp_of[n]] for n in spec.node_names}


def _ring_radius(k: int) -> float:
    return 0.0 if k == 1 else _RING_CHORD / (2 * math.sin(math.pi / k))


def graph_layout(spec: GraphSpec, *, layer_gap: float = _LAYER_GAP) -> dict[str, Position]:
    """Positions (data units) for every node of ``spec``.

    Layers run left→right by :func:`layer_depths`; the components of one layer are stacked
    top→bottom in node order and centred on y = 0. A cyclic component of k nodes is a ring whose
    first node faces left (where its inputs come from) and the others follow clockwise.

    Args:
        layer_gap: horizontal distance between neighbouring layers (between a ring's edge and
            the next layer).
    """
    depths = layer_depths(spec)
    cyclic = {n for c in find_cycles(spec) for n in c}
    layers: dict[int, list[list[str]]] = {}
    for comp in _components(spec):
        layers.setdefault(depths[comp[0]], []).append(comp)
    # a ring makes its layer wider; neighbouring layers keep the same gap to its edge
    widths = {
        d: max(2 * _ring_radius(len(c)) if c[0] in cyclic else 0.0 for c in comps)
        for d, comps in layers.items()
    }
    pos: dict[str, Position] = {}
    x = 0.0
    for d in sorted(layers):
        if d > 0:
            x += widths[d - 1] / 2 + layer_gap + widths[d] / 2
        comps = layers[d]
        radii = [_ring_radius(len(c)) if c[0] in cyclic else 0.0 for c in comps]
        total = sum(2 * r for r in radii) + _STACK_GAP * (len(comps) - 1)
        top = total / 2
        for comp, r in zip(comps, radii, strict=True):
            cy = top - r
            if r == 0.0:
                pos[comp[0]] = (x, cy)
            else:
                k = len(comp)
                for j, name in enumerate(comp):
                    angle = math.pi - 2 * math.pi * j / k
                    pos[name] = (x + r * math.cos(angle), cy + r * math.sin(angle))
            top -= 2 * r + _STACK_GAP
    return pos
