"""Energy over inference steps: a heatmap and per-node curves, or an animated graph."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.animation import FuncAnimation, PillowWriter
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure

from pcgraph.schema import GraphSpec
from pcgraph.viz._common import (
    ArrayLike,
    PathLike,
    SpecLike,
    as_spec,
    atomic_path,
    energy_norm,
    has_energy,
    new_figure,
    save_figure,
    to_numpy,
)
from pcgraph.viz.graph import (
    ENERGY_CMAP,
    clamp_title,
    energy_face,
    graph_figure_size,
    node_label,
    render_graph,
)

__all__ = ["animate_energy_flow", "plot_energy_flow"]


def _trace_array(trace: ArrayLike, spec: GraphSpec) -> np.ndarray:
    """[T+1, N] float array; raises ValueError naming the expected shape."""
    arr = to_numpy(trace)
    n = len(spec.nodes)
    if arr.ndim != 2 or arr.shape[1] != n or arr.shape[0] < 1:
        raise ValueError(
            f"trace must have shape [T+1, {n}] (one column per node of {spec.name!r}: "
            f"{', '.join(spec.node_names)}), got {list(arr.shape)}"
        )
    return arr


def plot_energy_flow(
    trace: ArrayLike, spec: SpecLike, *, path: PathLike | None = None, log: bool = True
) -> Figure:
    """How the energy moves through the graph during inference.

    Left: a heatmap of E_i(t), nodes × steps. Right: one curve per node and the total
    E(t) = Σ_i E_i(t). Roots (nodes without parents) carry no energy: their rows are grey and
    marked "(no energy)", and they have no curve.

    Args:
        trace: per-node energies at every inference step, [T+1, N] in node order (what
            ``solve_inference(..., trace=True).trace`` returns).
        spec: the GraphSpec (or a PCNetwork, or a YAML path) the trace belongs to.
        path: also save the figure there (atomically).
        log: log colour scale and log y axis (non-positive values are clipped / hidden).

    Returns:
        the Figure.
    """
    spec = as_spec(spec)
    energy = _trace_array(trace, spec)
    carries = has_energy(spec)
    steps = np.arange(energy.shape[0])
    shown = np.where(carries[None, :], energy, np.nan)
    norm = energy_norm(shown, log=log)

    fig = new_figure(12.0, max(3.5, 0.45 * len(spec.nodes) + 1.6))
    heat_ax, line_ax = fig.subplots(1, 2, width_ratios=[1.2, 1.0])
    cmap = colormaps[ENERGY_CMAP].with_extremes(bad="#E6E6E6")
    image = heat_ax.imshow(
        np.ma.masked_invalid(shown.T), aspect="auto", interpolation="nearest", cmap=cmap,
        norm=norm, extent=(-0.5, steps[-1] + 0.5, len(spec.nodes) - 0.5, -0.5),
    )  # fmt: skip
    heat_ax.set_yticks(
        range(len(spec.nodes)),
        [
            n.name if c else f"{n.name} (no energy)"
            for n, c in zip(spec.nodes, carries, strict=True)
        ],
    )
    heat_ax.set_xlabel("inference step t")
    heat_ax.set_title("energy per node $E_i(t)$", fontsize=10)
    fig.colorbar(image, ax=heat_ax, label="$E_i$")

    for i, node in enumerate(spec.nodes):
        if carries[i]:
            line_ax.plot(steps, energy[:, i], marker=".", ms=3, label=node.name)
    line_ax.plot(steps, energy[:, carries].sum(axis=1), "k--", lw=1.5, label="total")
    if log:
        line_ax.set_yscale("log")
    line_ax.set_xlabel("inference step t")
    line_ax.set_ylabel("energy")
    line_ax.grid(alpha=0.3)
    roots = [n.name for n, c in zip(spec.nodes, carries, strict=True) if not c]
    line_ax.legend(
        fontsize=8, title=f"no energy: {', '.join(roots)}" if roots else None, title_fontsize=8
    )
    fig.suptitle(f"{spec.name} — energy during inference (T={steps[-1]})", fontsize=11)
    if path is not None:
        save_figure(fig, path)
    return fig


def animate_energy_flow(
    trace: ArrayLike,
    spec: SpecLike,
    path: PathLike,
    *,
    fps: int = 4,
    clamp: str | Iterable[str] | None = "train",
) -> Path:
    """A GIF of the drawn graph whose node colours follow E_i(t), one frame per step.

    The colour scale is fixed across frames (log when the energies span more than two decades),
    so colours compare between steps.

    Args:
        trace: [T+1, N] per-node energies, as for :func:`plot_energy_flow`.
        spec: the GraphSpec (or a PCNetwork, or a YAML path).
        path: where to write the GIF (atomically).
        fps: frames per second.
        clamp: the clamp set the trace was recorded under (drawn as thick borders).

    Returns:
        the path written.
    """
    spec = as_spec(spec)
    energy = _trace_array(trace, spec)
    carries = has_energy(spec)
    norm = energy_norm(np.where(carries[None, :], energy, np.nan))
    fig = new_figure(*graph_figure_size(spec))
    ax = fig.add_subplot()
    drawn = render_graph(ax, spec, clamp=clamp, values=energy[0], norm=norm)
    fig.colorbar(
        ScalarMappable(norm=norm, cmap=ENERGY_CMAP), ax=ax, shrink=0.7, label="energy $E_i$"
    )
    title = clamp_title(spec, clamp)
    last = energy.shape[0] - 1

    def show(t: int) -> list[Any]:
        for i, node in enumerate(spec.nodes):
            value = float(energy[t, i])
            drawn.nodes[node.name].set_facecolor(energy_face(value, bool(carries[i]), norm))
            drawn.labels[node.name].set_text(node_label(spec, i, value, bool(carries[i])))
        ax.set_title(f"{title}\ninference step {t}/{last}", fontsize=10)
        return []

    animation = FuncAnimation(fig, show, frames=range(last + 1), blit=False, repeat=False)
    with atomic_path(path) as tmp:
        # the writer picks the format from the suffix, which atomic_path keeps
        animation.save(str(tmp), writer=PillowWriter(fps=fps), dpi=100)
    return Path(path)
