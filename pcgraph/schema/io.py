"""Reading and writing GraphSpecs: YAML files/text and NetworkX graphs, losslessly."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import networkx as nx
import yaml

from pcgraph.atomic import atomic_write_text
from pcgraph.errors import SpecError
from pcgraph.schema.spec import EdgeSpec, GraphSpec, NodeSpec
from pcgraph.yamlio import MAX_BYTES, Lines, load_yaml

__all__ = [
    "atomic_write_text",
    "spec_from_networkx",
    "spec_from_yaml",
    "spec_to_networkx",
    "spec_to_yaml",
]


def _looks_like_path(value: Any) -> bool:
    """A path, not YAML text: a PathLike, or a one-line string naming a .yaml/.yml file or an
    existing path (a one-line YAML mapping always has a ': ' or a '{')."""
    if isinstance(value, os.PathLike):
        return True
    if not isinstance(value, str) or "\n" in value:
        return False
    if value.endswith((".yaml", ".yml")):
        return True
    return not (len(value) > 4096 or ": " in value or value.lstrip().startswith(("{", "[", "-")))


def spec_from_yaml(path_or_text: str | os.PathLike[str]) -> GraphSpec:
    """Parse and validate YAML given as a file path or as text; errors name the file and line."""
    if _looks_like_path(path_or_text):
        path = Path(path_or_text)
        if path.is_dir():
            raise SpecError(f"{path}: is a folder, not a topology file; name a .yaml file in it")
        if not path.is_file():
            raise SpecError(
                f"{path}: no such file; check the path (topologies live in topologies/*.yaml)"
            )
        try:
            if path.stat().st_size > MAX_BYTES:
                raise SpecError(
                    f"{path}: {path.stat().st_size:,} bytes, more than the {MAX_BYTES:,} a "
                    "topology may have; is this the right file?"
                )
            text, source = path.read_text(encoding="utf-8"), str(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(
                f"{path}: cannot be read as UTF-8 YAML text ({exc}); "
                "check that it is a topology file"
            ) from None
    else:
        text, source = str(path_or_text), "<yaml text>"
    data = load_yaml(text, source)
    if data is None:
        raise SpecError(f"{source}: the file is empty; a graph needs 'nodes' (and 'edges')")

    def lines() -> Lines:  # only on an error: the text is composed again to find its lines
        found: Lines = {}
        load_yaml(text, source, lines=found)
        return found

    return GraphSpec.from_dict(data, source=source, lines=lines)


def _node_to_dict(node: NodeSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"name": node.name}
    out["shape"] = node.shape[0] if len(node.shape) == 1 else list(node.shape)
    out.update(node.model_dump(exclude={"name", "shape"}, exclude_defaults=True))
    if node.role != "latent":
        out["role"] = node.role
    return out


def _edge_to_dict(edge: EdgeSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"source": edge.source, "target": edge.target, "op": edge.op}
    if edge.params:
        out["params"] = dict(edge.params)
    out["bias"] = edge.bias
    return out


def spec_to_dict(spec: GraphSpec) -> dict[str, Any]:
    """A plain mapping (YAML-ready) that :meth:`GraphSpec.from_dict` turns back into ``spec``."""
    out: dict[str, Any] = {"name": spec.name}
    if spec.description:
        out["description"] = spec.description
    out["nodes"] = [_node_to_dict(n) for n in spec.nodes]
    out["edges"] = [_edge_to_dict(e) for e in spec.edges]
    if spec.metadata:
        out["metadata"] = dict(spec.metadata)
    return out


def spec_to_yaml(spec: GraphSpec, path: str | os.PathLike[str] | None = None) -> str:
    """YAML text of ``spec``; also written atomically to ``path`` when given."""
    text = yaml.safe_dump(spec_to_dict(spec), sort_keys=False, allow_unicode=True, width=100)
    if path is not None:
        atomic_write_text(path, text)
    return text


def spec_to_networkx(spec: GraphSpec) -> nx.DiGraph:
    """A DiGraph: graph attrs name/description/metadata; node and edge attrs = the spec fields."""
    g = nx.DiGraph(name=spec.name, description=spec.description, metadata=dict(spec.metadata))
    for node in spec.nodes:
        g.add_node(node.name, **node.model_dump(exclude={"name"}))
    for edge in spec.edges:
        g.add_edge(edge.source, edge.target, **edge.model_dump(exclude={"source", "target"}))
    return g


def spec_from_networkx(graph: nx.DiGraph) -> GraphSpec:
    """Build a spec from a DiGraph. Node attrs: shape (required), role, activation, energy,
    precision. Edge attrs: op, params, bias. Graph attrs: name, description, metadata."""
    if not isinstance(graph, nx.DiGraph) or graph.is_multigraph():
        raise SpecError(
            f"expected a networkx.DiGraph, got {type(graph).__name__}; convert with "
            "nx.DiGraph(g) (parallel edges are not supported)"
        )
    nodes = []
    for name, attrs in graph.nodes(data=True):
        if "shape" not in attrs:
            raise SpecError(
                f"node {name!r} has no 'shape' attribute; add one, e.g. "
                f"g.nodes[{name!r}]['shape'] = 256"
            )
        nodes.append({"name": str(name), **attrs})
    edges = [
        {"source": str(u), "target": str(v), **attrs} for u, v, attrs in graph.edges(data=True)
    ]
    data = {
        "name": graph.graph.get("name") or "graph",
        "description": graph.graph.get("description", ""),
        "nodes": nodes,
        "edges": edges,
        "metadata": dict(graph.graph.get("metadata") or {}),
    }
    return GraphSpec.from_dict(data, source=f"networkx graph {data['name']!r}")
