"""The report of ``pcgraph check``: :class:`GraphAnalysis`, built by :func:`analyze`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import networkx as nx
from pydantic import ValidationError

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
    still_after_sweep,
    unreached_nodes,
)
from pcgraph.analysis.memory import evaluation_clamp, format_nodes, memory_observations
from pcgraph.errors import InitError, SpecError
from pcgraph.schema import GraphSpec
from pcgraph.schema.prior import PriorSpec

__all__ = [
    "ClampInit",
    "GraphAnalysis",
    "analyze",
]


@dataclass(frozen=True)
class ClampInit:
    """What an initialization does under one clamp set of a run (``pcgraph check``).

    Attributes:
        role: ``training``, ``evaluation`` or ``training and evaluation``.
        clamp: the clamp set, in graph order.
        init: the initialization used there (``auto`` resolved).
        observe: memory only: the nodes it reads (clamped in training and at evaluation).
        targets: memory only: the nodes it retrieves; the other free nodes are swept below.
        unread: memory only: nodes clamped in training that it does not read (free at
            evaluation, such as a label).
    """

    role: str
    clamp: list[str]
    init: str
    observe: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """One line of the summary."""
        head = f"{self.role} {format_nodes(self.clamp)}: "
        if self.init != "memory":
            return head + self.init
        if not self.targets:
            return head + "memory with nothing to retrieve (a forward sweep)"
        reads = f"reading {', '.join(self.observe)}" if self.observe else "reading nothing"
        targets = ", ".join(self.targets)
        if self.role == "evaluation":
            return head + f"the training memory for {targets}, {reads}, forward below"
        text = f"memory for {targets} {reads}"
        if self.unread:
            text += f" (not {', '.join(self.unread)}: free at evaluation)"
        return head + text + ", forward below"


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
    still_after_sweep: list[str] = field(default_factory=list)  # at ε = 0 for ever after it
    # the clamp set a run trained under ``clamp`` is evaluated with (predict: the inputs)
    evaluation_clamp: list[str] = field(default_factory=list)
    # for init auto or memory (named by init_explained): what it does in training and at
    # evaluation; empty for the other initializations
    init_explained: str = ""
    init_per_clamp: list[ClampInit] = field(default_factory=list)
    # the initialization whose cost smm_per_update counts (hybrid with its depth K); "" for auto
    cost_init: str = ""
    # energies beyond a fixed-precision prediction error: root priors {node: {mean, precision}}
    # and the nodes whose precision is learned
    priors: dict[str, dict[str, float]] = field(default_factory=dict)
    learned_precision: list[str] = field(default_factory=list)

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
        if self.init_per_clamp:
            auto = self.init_explained == "auto"
            lines.append(f"- initialization '{self.init_explained}' per clamp set:")
            lines.extend(f"  - {c.describe()}" for c in self.init_per_clamp)
            lines.append(
                "  - other clamp sets (queries): "
                + ("forward where Proposition 3.2 allows it, else " if auto else "")
                + "a memory trained reading only nodes clamped there; none: InitError "
                "(use query(..., init='zero'))"
            )
        for n, prior in self.priors.items():
            m, w = prior["mean"], prior["precision"]
            lines.append(
                f"- prior on root {n}: ½·{w:g}·‖{n} − {m:g}‖² added to the energy (a Gaussian "
                f"N({m:g}, 1/{w:g}) on every entry): an energy of its own while it is free"
            )
        if self.learned_precision:
            lines.append(
                f"- learned precision on {', '.join(self.learned_precision)}: energy "
                "½ w ‖x − μ‖² − ½ N log w with w = exp(s), s trained with the weights (the "
                "log term keeps w from collapsing to 0)"
            )
        if self.information_depths:
            reach = max(self.information_depths.values())
            lines.append(f"- data reaches every connected node after {reach} inference step(s)")
        still = self.still_after_sweep
        if self.forward_init_possible and still:
            lines.append(
                f"- after forward init the errors of {', '.join(still)} stay exactly 0 (no "
                "clamped node below them disagrees with the sweep): inference leaves them where "
                "they are, and the weights into them get no gradient"
            )
        elif self.forward_init_possible and self.error_front:
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
            f"- cost per weight update at T={self.T}"
            + (f" with init {self.cost_init}" if self.cost_init else "")
            + f": {self.smm_per_update} sequential matrix multiplications"
            + (f" (backprop: {self.smm_bp})" if self.smm_bp is not None else "")
        )
        return "\n".join(lines)


def analyze(
    graph: GraphSpec | nx.DiGraph,
    clamp: str | Iterable[str] | None = "train",
    *,
    T: int = 8,
    init: str = "auto",
    depth: int | None = None,
) -> GraphAnalysis:
    """Analyse ``graph`` under ``clamp`` (a task name or node names); see :class:`GraphAnalysis`.

    Args:
        T: inference steps, for the SMM count.
        init: the initialization whose cost to count; ``auto`` picks forward when Proposition 3.2
            allows it, memory otherwise.
        depth: hybrid's forward depth K (None: the whole sweep).
    """
    g = as_digraph(graph)
    clamped = resolve_clamp(g, clamp)
    order = {n: i for i, n in enumerate(g.nodes)}
    is_dag = nx.is_directed_acyclic_graph(g)
    possible, reason = check_forward_init(g, clamped)
    recommended = resolve_auto(g, clamped)
    chosen = recommended if init == "auto" else init
    all_roots = roots(g)
    evaluation = evaluation_clamp(g, clamped)
    explained = init if init in ("auto", "memory") else ""
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
        smm_per_update=smm_per_update(g, clamped, T, chosen, depth=depth),
        smm_bp=bp_smm(g),
        error_front=error_front(g, clamped) if possible else [],
        still_after_sweep=still_after_sweep(g, clamped) if possible else [],
        evaluation_clamp=sorted(evaluation, key=order.__getitem__),
        init_explained=explained,
        init_per_clamp=_per_clamp(g, clamped, evaluation, explained) if explained else [],
        # auto's choice is named above the cost already
        cost_init=""
        if init == "auto"
        else f"'{chosen}'" + (f" (K={depth})" if depth is not None else ""),
        priors=_priors(g),
        learned_precision=[n for n, d in g.nodes(data=True) if d.get("precision") == "learnable"],
    )


def _priors(g: nx.DiGraph) -> dict[str, dict[str, float]]:
    """{root: {mean, precision}} for the nodes that declare a prior (a spec's PriorSpec or the
    same two keys as a dict on a networkx node)."""
    found = {}
    for n, d in g.nodes(data=True):
        prior = d.get("prior")
        if prior is None:
            continue
        if not isinstance(prior, PriorSpec):  # a networkx node's dict: the schema decides
            try:
                prior = PriorSpec.model_validate(prior)
            except ValidationError as err:
                raise SpecError(
                    f"node {n!r}: prior {prior!r} is not {{mean: m, precision: p > 0}} "
                    f"({err.errors()[0]['msg']}); fix the node's 'prior' attribute"
                ) from None
        found[str(n)] = {"mean": float(prior.mean), "precision": float(prior.precision)}
    return found


def _per_clamp(
    g: nx.DiGraph, clamp: frozenset[str], evaluation: frozenset[str], init: str
) -> list[ClampInit]:
    """What ``init`` (auto or memory) does in training under ``clamp`` and at evaluation."""
    order = {n: i for i, n in enumerate(g.nodes)}
    try:
        observe = memory_observations(g, clamp)
    except InitError:  # nothing clamped: the memory would read nothing
        observe = []
    unread = [n for n in g.nodes if n in clamp and n not in observe]
    sets = [("training", clamp), ("evaluation", evaluation)]
    if evaluation == clamp:
        sets = [("training and evaluation", clamp)]
    rows = []
    for role, c in sets:
        chosen = resolve_auto(g, c) if init == "auto" else init
        memory = chosen == "memory"
        rows.append(
            ClampInit(
                role=role,
                clamp=sorted(c, key=order.__getitem__),
                init=chosen,
                observe=observe if memory else [],
                targets=memory_targets(g, c) if memory else [],
                unread=unread if memory else [],
            )
        )
    return rows
