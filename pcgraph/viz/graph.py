"""``draw_graph``: a predictive coding graph with roles, clamp set, ops, cycles and energies."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.collections import PathCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch
from matplotlib.text import Annotation

from pcgraph.analysis import CLAMP_TASKS, find_cycles, resolve_clamp
from pcgraph.schema import GraphSpec
from pcgraph.viz._common import (
    PathLike,
    SpecLike,
    as_spec,
    energy_norm,
    energy_vector,
    has_energy,
    new_figure,
    save_figure,
)
from pcgraph.viz.layout import Position, graph_layout

# the drawing API; the styles and label helpers below are shared with pcgraph.viz.energy
__all__ = ["GraphArtists", "draw_graph", "render_graph"]

# role → (face colour, marker): the marker keeps the role visible when colour shows energy
ROLE_STYLE: dict[str, tuple[str, str]] = {
    "input": ("#4C72B0", "s"),
    "output": ("#DD8452", "D"),
    "latent": ("#C8C8C8", "o"),
}
CYCLE_COLOR = "#C44E52"
EDGE_COLOR = "#555555"
ENERGY_CMAP = "viridis"
NO_ENERGY_COLOR = "white"
CLAMPED_BORDER = ("#1A1A1A", 3.2)
FREE_BORDER = ("#707070", 0.8)
Color = str | tuple[float, float, float, float]
# Past this many edges only the uncommon ops are labelled; the common one goes in the legend.
_MAX_EDGE_LABELS = 10
# Inches per data unit of the layout.
_SCALE = 1.5
# Approximate width (points) of one character of an edge label.
_CHAR_WIDTH = 4.3
# Data units between a node and the middle of its label below it.
_LABEL_DROP = 0.3
# Marker area relative to a circle of the same nominal diameter, so shapes look equally big.
_MARKER_AREA = {"o": 1.0, "s": 0.75, "D": 0.55}


def _marker_diameter(size: int) -> float:
    """Marker diameter in points, growing with log(dimension)."""
    return 16.0 + 6.0 * math.log10(max(size, 1))


def _edge_text(edge_description: str) -> str:
    """Long descriptions go on two lines: the op, then its parameters."""
    op, _, params = edge_description.partition(" ")
    return f"{op}\n{params}" if params and len(edge_description) > 10 else edge_description


def _layout(spec: GraphSpec) -> dict[str, Position]:
    """:func:`graph_layout` with layers far enough apart for the widest edge label."""
    widest = max(
        (len(line) for e in spec.edges for line in _edge_text(e.describe()).splitlines()),
        default=0,
    )
    biggest = max(_marker_diameter(n.size) for n in spec.nodes)
    points = _CHAR_WIDTH * widest + biggest + 8.0
    return graph_layout(spec, layer_gap=max(1.0, points / (72.0 * _SCALE)))


def _shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def clamp_title(spec: GraphSpec, clamp: str | Iterable[str] | None) -> str:
    """``"name — clamp train {x, y}"``: the graph and its clamp set, in node order."""
    clamped = resolve_clamp(spec, clamp)
    names = "{" + ", ".join(n for n in spec.node_names if n in clamped) + "}"
    task = f"{clamp} " if isinstance(clamp, str) and clamp in CLAMP_TASKS else ""
    return f"{spec.name} — clamp {task}{names}"


def _distance_to_segment(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    t = float(np.clip(np.dot(p - a, ab) / max(float(np.dot(ab, ab)), 1e-12), 0.0, 1.0))
    return float(np.linalg.norm(p - (a + t * ab)))


def _edge_bend(pos: Mapping[str, Position], source: str, target: str, same_cycle: bool) -> float:
    """arc3 ``rad`` of an edge: ring edges bow outward; an edge that would pass through
    another node or its label bends away from them (upward on a tie); others are straight."""
    if same_cycle:
        return -0.25
    a, b = np.array(pos[source]), np.array(pos[target])
    # each node and the label written below it are obstacles
    others = [
        np.array(p) + np.array([0.0, dy])
        for n, p in pos.items()
        if n not in (source, target)
        for dy in (0.0, -_LABEL_DROP)
    ]
    if not others or min(_distance_to_segment(p, a, b) for p in others) > 0.25:
        return 0.0

    def clearance(rad: float) -> float:
        return min(float(np.linalg.norm(p - _arc_midpoint(a, b, rad))) for p in others)

    # for an edge running left→right, a negative rad bows upward
    up = -0.3 if b[0] >= a[0] else 0.3
    return up if clearance(up) >= clearance(-up) - 1e-9 else -up


def _arc_midpoint(a: np.ndarray, b: np.ndarray, rad: float) -> np.ndarray:
    """Midpoint of matplotlib's arc3 curve (a quadratic Bézier with control point
    m + rad·(dy, −dx)); exact in data units because the axes keep an equal aspect."""
    d = b - a
    return (a + b) / 2 + 0.5 * rad * np.array([d[1], -d[0]])


def energy_face(value: float, carries: bool, norm: Normalize) -> Color:
    """A node's face colour for energy ``value``; white for a root or a missing value."""
    if not carries or not math.isfinite(value):
        return NO_ENERGY_COLOR
    return colormaps[ENERGY_CMAP](float(norm(value)))


@dataclass
class GraphArtists:
    """Handles of one drawn graph, for updating its node colours (animation)."""

    ax: Axes
    nodes: dict[str, PathCollection]
    labels: dict[str, Annotation]
    carries_energy: np.ndarray
    edges: dict[int, FancyArrowPatch] = field(default_factory=dict)  # by edge index


def node_label(spec: GraphSpec, i: int, value: float | None, carries: bool) -> str:
    """``name`` / ``[shape]``, and with a value ``E=…`` (or ``no energy`` for a root)."""
    node = spec.nodes[i]
    text = f"{node.name}\n{_shape_text(node.shape)}"
    if value is None:
        return text
    if not carries:
        return text + "\nno energy"
    return text + ("\nE=?" if not math.isfinite(value) else f"\nE={value:.3g}")


def render_graph(
    ax: Axes,
    spec: GraphSpec,
    *,
    clamp: str | Iterable[str] | None,
    values: np.ndarray | None,
    norm: Normalize | None,
) -> GraphArtists:
    """Draw ``spec`` into ``ax``; with ``values`` ([N]) the nodes are coloured by ``norm``."""
    pos = _layout(spec)
    clamped = resolve_clamp(spec, clamp)
    cyclic = find_cycles(spec)
    comp_of = {n: k for k, c in enumerate(cyclic) for n in c}
    carries = has_energy(spec)

    diam = {n.name: _marker_diameter(n.size) for n in spec.nodes}
    nodes: dict[str, PathCollection] = {}
    labels: dict[str, Annotation] = {}
    for i, node in enumerate(spec.nodes):
        role_color, marker = ROLE_STYLE[node.role]
        if values is None or norm is None:
            face: Color = role_color
        else:
            face = energy_face(float(values[i]), bool(carries[i]), norm)
        border, width = CLAMPED_BORDER if node.name in clamped else FREE_BORDER
        x, y = pos[node.name]
        nodes[node.name] = ax.scatter(
            [x], [y], s=_MARKER_AREA[marker] * diam[node.name] ** 2, c=[face], marker=marker,
            edgecolors=border, linewidths=width, zorder=3, gid=f"node:{node.name}",
        )  # fmt: skip
        value = None if values is None else float(values[i])
        labels[node.name] = ax.annotate(
            node_label(spec, i, value, bool(carries[i])),
            xy=(x, y), xytext=(0, -(diam[node.name] / 2 + 4)), textcoords="offset points",
            ha="center", va="top", fontsize=8, zorder=4,
            bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.7},
        )  # fmt: skip

    descriptions = [e.describe() for e in spec.edges]
    common, _ = Counter(descriptions).most_common(1)[0] if descriptions else ("", 0)
    hide_common = len(spec.edges) > _MAX_EDGE_LABELS
    edges: dict[int, FancyArrowPatch] = {}
    for k, (edge, text) in enumerate(zip(spec.edges, descriptions, strict=True)):
        on_cycle = comp_of.get(edge.source, -1) == comp_of.get(edge.target, -2)
        rad = _edge_bend(pos, edge.source, edge.target, on_cycle)
        a, b = np.array(pos[edge.source]), np.array(pos[edge.target])
        edges[k] = FancyArrowPatch(
            tuple(a), tuple(b), connectionstyle=f"arc3,rad={rad}", arrowstyle="-|>",
            mutation_scale=11, shrinkA=diam[edge.source] / 2 + 1,
            shrinkB=diam[edge.target] / 2 + 2, color=CYCLE_COLOR if on_cycle else EDGE_COLOR,
            linewidth=1.8 if on_cycle else 1.2, zorder=1,
            gid=f"edge:{edge.source}->{edge.target}",
        )  # fmt: skip
        ax.add_patch(edges[k])
        if not (hide_common and text == common):
            mx, my = _arc_midpoint(a, b, rad)
            ax.text(
                mx, my, _edge_text(text), fontsize=7, ha="center", va="center", zorder=2,
                color=CYCLE_COLOR if on_cycle else "#333333",
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85},
            )  # fmt: skip

    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 0.6, max(xs) + 0.6)
    ax.set_ylim(min(ys) - 0.75, max(ys) + 0.45)
    ax.set_aspect("equal", adjustable="box")
    ax.set_axis_off()
    _legend(ax, spec, values is not None, bool(cyclic), common if hide_common else None)
    return GraphArtists(ax, nodes, labels, carries, edges)


def _legend(
    ax: Axes, spec: GraphSpec, energy_mode: bool, any_cycle: bool, unlabelled: str | None
) -> None:
    handles: list[Any] = []
    for role in ("input", "latent", "output"):
        if role in {n.role for n in spec.nodes}:
            color, marker = ROLE_STYLE[role]
            face = "#EEEEEE" if energy_mode else color
            handles.append(Line2D([], [], ls="", marker=marker, ms=9, mfc=face,
                                  mec=FREE_BORDER[0], label=role))  # fmt: skip
    handles.append(Line2D([], [], ls="", marker="o", ms=9, mfc="white", mec=CLAMPED_BORDER[0],
                          mew=CLAMPED_BORDER[1], label="clamped"))  # fmt: skip
    handles.append(Line2D([], [], ls="", marker="o", ms=9, mfc="white", mec=FREE_BORDER[0],
                          mew=FREE_BORDER[1], label="free"))  # fmt: skip
    if energy_mode and not has_energy(spec).all():
        handles.append(Line2D([], [], ls="", marker="o", ms=9, mfc=NO_ENERGY_COLOR,
                              mec=FREE_BORDER[0], label="no energy (root)"))  # fmt: skip
    if any_cycle:
        handles.append(Line2D([], [], color=CYCLE_COLOR, lw=1.8, label="edge on a cycle"))
    if unlabelled:
        handles.append(Line2D([], [], color=EDGE_COLOR, lw=1.2, label=f"unlabelled: {unlabelled}"))
    ax.legend(
        handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0),
        ncol=len(handles) if len(handles) <= 6 else math.ceil(len(handles) / 2),
        fontsize=8, frameon=False,
    )  # fmt: skip


def graph_figure_size(spec: GraphSpec) -> tuple[float, float]:
    """Inches (width, height) that fit the layout of ``spec`` with its title and legend."""
    pos = _layout(spec)
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    width = _SCALE * (max(xs) - min(xs) + 1.2)
    height = _SCALE * (max(ys) - min(ys) + 1.2) + 1.1  # title and legend
    return max(width, 5.5), max(height, 3.0)


def _root_figure(ax: Axes) -> Figure:
    """The top-level Figure of ``ax`` (which may sit in a SubFigure)."""
    parent: Any = ax.figure
    while not isinstance(parent, Figure):
        parent = parent.figure
    return parent


def draw_graph(
    spec_or_net: SpecLike,
    *,
    clamp: str | Iterable[str] | None = "train",
    energies: Mapping[str, Any] | Any | None = None,
    ax: Axes | None = None,
    path: PathLike | None = None,
) -> Figure:
    """Draw a graph: nodes by role, the clamp set, edge ops, cycles and (optionally) energies.

    Layers run left→right by forward depth (cycles drawn as rings, see
    :func:`pcgraph.viz.graph_layout`). Nodes are coloured by role (input, latent, output; also
    told apart by marker), clamped nodes have a thick dark border, and marker size grows with
    log(dimension). Labels read ``name`` / ``[shape]``; edges carry their op
    (``EdgeSpec.describe()``, e.g. ``conv2d k=3 s=2``; with more than 10 edges only the uncommon
    ops are written and the common one goes to the legend). Edges on cycles are red.

    Args:
        spec_or_net: a GraphSpec, a PCNetwork (its ``.spec``) or a YAML path.
        clamp: a task (``train``, ``predict``, ``generate``, ``none``) or node names.
        energies: per-node energy E_i, a ``{name: value}`` mapping or a [N] tensor/array in node
            order; colours the nodes instead of the roles, with a colour bar (log scale when the
            values span more than two decades). Roots carry no energy and are drawn white.
        ax: draw into these axes (their figure is returned) instead of a new figure.
        path: also save the figure there (atomically; format from the suffix).

    Returns:
        the Figure (not registered with pyplot: nothing to close).
    """
    spec = as_spec(spec_or_net)
    if ax is None:
        fig = new_figure(*graph_figure_size(spec))
        ax = fig.add_subplot()
    else:
        fig = _root_figure(ax)
    values = None
    norm = None
    if energies is not None:
        values = energy_vector(spec, energies)
        norm = energy_norm(np.where(has_energy(spec), values, np.nan))
    render_graph(ax, spec, clamp=clamp, values=values, norm=norm)
    if norm is not None:
        bar = ax.figure.colorbar(ScalarMappable(norm=norm, cmap=ENERGY_CMAP), ax=ax, shrink=0.7)
        bar.set_label("energy $E_i$")
    ax.set_title(clamp_title(spec, clamp), fontsize=10)
    if path is not None:
        save_figure(fig, path)
    return fig
