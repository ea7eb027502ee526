"""The report of ``pcgraph check``: :class:`GraphAnalysis`, built by :func:`analyze`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import networkx as nx

from pcgraph.analysis.cost import bp_smm, resolve_auto, smm_per_update
from pcgraph.analysis.graph import (
    as_digraph,
    check_forward_init,
    error_front,
    find_cycles,
    forward_levels,
    information_depths,
    memory_targets,
    resolve_clamp,
    roots,
    unreached_nodes,
)
from pcgraph.schema import GraphSpec

__all__ = [
    "GraphAnalysis",
    "analyze",
]


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
