"""What a Hopfield memory may read, and which clamp sets it serves (no torch).

A memory is trained on training minibatches, under the training clamp set, and used again at
evaluation, under another one: a classifier trains with the image x and the label y clamped and
predicts with x alone. The memory must read only nodes clamped in *both*: a node that is data in
training but free at evaluation (the label) would be read in training — where it gives the
answer away — and be missing at test time.

- :func:`evaluation_clamp` — the clamp set a model trained under a clamp set is evaluated with;
- :func:`memory_observations` — the nodes a memory trained under a clamp set reads (default or
  declared, checked);
- :func:`memory_serves` — whether a memory trained under one clamp set can initialize another;
- :func:`check_memory` — the memory of a training run checked once, before any minibatch
  (:func:`check_memory_evaluation`: evaluation needs no memory that training never learns).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import networkx as nx

from pcgraph.analysis.graph import as_digraph, memory_targets
from pcgraph.errors import InitError
from pcgraph.schema import GraphSpec

__all__ = [
    "check_memory",
    "check_memory_evaluation",
    "evaluation_clamp",
    "format_nodes",
    "memory_observations",
    "memory_serves",
]


def format_nodes(nodes: Iterable[str]) -> str:
    """``{a, b}``: a node set as the messages write it."""
    return "{" + ", ".join(nodes) + "}"


def _ordered(g: nx.DiGraph, nodes: Iterable[str]) -> list[str]:
    wanted = set(nodes)
    return [n for n in g.nodes if n in wanted]


def evaluation_clamp(graph: GraphSpec | nx.DiGraph, train_clamp: Iterable[str]) -> frozenset[str]:
    """The clamp set a model trained under ``train_clamp`` is evaluated with.

    Its clamped inputs when it clamps inputs and outputs (supervised training is evaluated by
    ``predict``, the label free), otherwise ``train_clamp`` itself (a generative model is
    evaluated by ``reconstruct``, from the observations it was trained on).
    """
    g = as_digraph(graph)
    clamp = frozenset(train_clamp)
    role = {n: d.get("role", "latent") for n, d in g.nodes(data=True)}
    inputs = frozenset(n for n in clamp if role.get(n) == "input")
    has_output = any(role.get(n) == "output" for n in clamp)
    return inputs if inputs and has_output else clamp


def memory_observations(
    graph: GraphSpec | nx.DiGraph,
    train_clamp: Iterable[str],
    observe: Sequence[str] | None = None,
) -> list[str]:
    """The observation nodes of a memory trained under ``train_clamp``, in graph order.

    Args:
        observe: the nodes declared (``MemoryInit(observe=...)``); None: every node clamped both
            in training and at evaluation (:func:`evaluation_clamp`), e.g. the inputs of a
            supervised classifier, the image of a generative decoder.

    Raises:
        InitError: a declared node that is unknown, not clamped in training, or free at
            evaluation (naming it and the fix); no observation at all.
    """
    g = as_digraph(graph)
    clamp = frozenset(train_clamp)
    evaluation = evaluation_clamp(g, clamp)
    default = _ordered(g, clamp & evaluation)
    if observe is None:
        if not default:
            raise InitError(
                "memory init needs observations: clamp at least one node (the memory reads "
                "the clamped data to retrieve the free states)"
            )
        return default
    fix = f"observe={default!r} (the default: clamped in training and at evaluation)"
    unknown = [n for n in observe if n not in g]
    if unknown:
        raise InitError(
            f"memory: observe names unknown node(s) {', '.join(map(repr, unknown))}; known "
            f"nodes: {', '.join(g.nodes)}"
        )
    unclamped = [n for n in observe if n not in clamp]
    if unclamped:
        raise InitError(
            f"memory: observe lists {', '.join(map(repr, unclamped))}, not clamped in training "
            f"(clamp set {format_nodes(_ordered(g, clamp))}): a memory reads data, not states; "
            f"use {fix}"
        )
    leaking = [n for n in observe if n not in evaluation]
    if leaking:
        which = "is" if len(leaking) == 1 else "are"
        raise InitError(
            f"memory: observe lists {', '.join(map(repr, leaking))}, which {which} free at "
            f"evaluation (training with clamp set {format_nodes(_ordered(g, clamp))} is "
            f"evaluated with {format_nodes(_ordered(g, evaluation))}): the memory would learn "
            f"to read it in training and find nothing there at test time; use {fix}"
        )
    if not observe:
        raise InitError(f"memory: observe is empty; use {fix}")
    return _ordered(g, observe)


def memory_serves(
    graph: GraphSpec | nx.DiGraph,
    train_clamp: Iterable[str],
    observe: Iterable[str],
    clamp: Iterable[str],
) -> str | None:
    """Why the memory trained under ``train_clamp`` reading ``observe`` cannot initialize the
    free nodes under ``clamp``, or None when it can: every node it reads is clamped there, and
    every node that needs a memory there (:func:`memory_targets`) has one."""
    g = as_digraph(graph)
    here = frozenset(clamp)
    missing = [n for n in observe if n not in here]
    if missing:
        return f"it reads {', '.join(missing)}, not clamped here"
    trained = set(memory_targets(g, train_clamp))
    uncovered = [n for n in memory_targets(g, here) if n not in trained]
    if uncovered:
        return f"it has no memory for {', '.join(uncovered)}"
    return None


def check_memory(
    graph: GraphSpec | nx.DiGraph,
    train_clamp: Iterable[str],
    observe: Sequence[str] | None = None,
) -> list[str]:
    """Check the memory of a run trained under ``train_clamp`` before any minibatch: its
    observations (:func:`memory_observations`), and that it serves the evaluation clamp set.

    Returns:
        the observation nodes.

    Raises:
        InitError: a bad observation (see :func:`memory_observations`), or nodes that need a
            memory at evaluation that training never gives one (they are clamped or
            forward-initialized in training, e.g. a label that feeds back into a cycle).
    """
    g = as_digraph(graph)
    clamp = frozenset(train_clamp)
    observed = memory_observations(g, clamp, observe)
    check_memory_evaluation(g, clamp)
    return observed


def check_memory_evaluation(graph: GraphSpec | nx.DiGraph, train_clamp: Iterable[str]) -> None:
    """Refuse a run whose evaluation needs memories that training never learns.

    Raises:
        InitError: naming the nodes that need a memory at evaluation (free on a cycle, or a
            free root) but are clamped or forward-initialized in training.
    """
    g = as_digraph(graph)
    clamp = frozenset(train_clamp)
    evaluation = evaluation_clamp(g, clamp)
    trained = set(memory_targets(g, clamp))
    uncovered = [n for n in memory_targets(g, evaluation) if n not in trained]
    if uncovered:
        raise InitError(
            f"memory: at evaluation (clamp set {format_nodes(_ordered(g, evaluation))}) "
            f"{', '.join(uncovered)} need a memory (free on a cycle, or a free root), but "
            f"training with clamp set {format_nodes(_ordered(g, clamp))} never initializes them "
            "by memory (they are clamped or forward-initialized there), so none would learn "
            "them; use init='zero' or 'random' for this graph"
        )
