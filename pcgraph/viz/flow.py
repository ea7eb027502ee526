"""Energy flow on the drawn graph: nodes coloured by their energy per sample and edges coloured
and thickened by the size of the error message they carry back, step by step, for one or several
runs side by side (the same batch under different initializations, say).

:func:`record_flow` runs a learner's initialization and then T inference steps, and measures at
every step t = 0 … T

- E_i(t) / B, the energy of node i per sample (B = batch size);
- ‖m_e(t)‖ per sample, the root mean square over the batch of the message
  m_e = J_{f_e}(σ_j(x_j))ᵀ δ_i that edge e: j → i sends back to its source, with
  δ_i = −∂E_i/∂μ_i its target's error signal (for a linear edge m_e = δ_i W).

:func:`animate_flow` draws the runs as panels of one animation on fixed log colour scales (one
for energies, one for messages, shared by every panel and frame), written as a GIF or as an
HTML page with a step slider (matplotlib's JavaScript player: no extra dependency, no network).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib import colormaps
from matplotlib.animation import FuncAnimation, PillowWriter
from matplotlib.cm import ScalarMappable

from pcgraph.schema import GraphSpec
from pcgraph.viz._common import PathLike, atomic_path, energy_norm, has_energy, new_figure
from pcgraph.viz.graph import ENERGY_CMAP, energy_face, graph_figure_size, render_graph
from pcgraph.viz.jshtml import offline_page

if TYPE_CHECKING:
    import torch

    from pcgraph.engine import PCLearner
    from pcgraph.init import Initializer

__all__ = ["FLOW_SUFFIXES", "STILL_SUFFIXES", "FlowTrace", "animate_flow", "record_flow"]

MESSAGE_CMAP = "magma_r"
_QUIET = "#D0D0D0"  # an edge whose message is (numerically) zero
_WIDTH = (0.8, 5.0)  # line width of the smallest and the largest message


@dataclass(frozen=True)
class FlowTrace:
    """One run's energies and messages at every inference step.

    Attributes:
        spec: the graph.
        clamp: the clamped nodes.
        title: what the run is (e.g. ``"forward init"``).
        node_energy: [T+1, N] energy per sample of every node, in node order (0 for roots).
        edge_message: [T+1, E] RMS size per sample of every edge's message, in edge order.
    """

    spec: GraphSpec
    clamp: frozenset[str]
    title: str
    node_energy: np.ndarray
    edge_message: np.ndarray


def _measure(net: Any, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(energy per sample [N], message size per sample [E]) at the states ``x``."""
    import torch

    from pcgraph.energies import get_energy

    batch = x.shape[0]
    with torch.no_grad():
        energy = (net.node_energies(x) / batch).double().cpu().numpy()
    # δ_i = −∂E_i/∂μ_i = w_i ε_i, with ε from the node's energy object (gaussian: x − μ)
    delta = {
        node.index: net.precision(node.name)  # a learned one: its current w
        * get_energy(node.energy).error(
            net.view(x, node.name), net.prediction(x, node.index).detach()
        )
        for node in net.nodes
        if node.parents
    }
    sizes = np.zeros(len(net.edges))
    with torch.no_grad():
        for e, edge in enumerate(net.edges):
            message = net.kernels[e].vjp(net.sent(x, edge.source), delta[edge.target])
            sizes[e] = float(message.double().square().sum().div(batch).sqrt())
    return energy, sizes


STILL_SUFFIXES = (".png", ".pdf", ".svg")
FLOW_SUFFIXES = (".gif", ".html", *STILL_SUFFIXES)


def record_flow(
    learner: PCLearner,
    data: Mapping[str, torch.Tensor],
    *,
    T: int | None = None,
    clamp: str | Iterable[str] | None = None,
    labels: torch.Tensor | None = None,
    title: str | None = None,
    init: str | Initializer | None = None,
) -> FlowTrace:
    """Initialize with the learner's initializer (evaluation mode), then run T SGD inference
    steps with its γ, measuring energies and messages at every step (see the module docstring).

    Args:
        learner: a (trained) learner; its network, initializer and ``lr_neurons`` are used.
        data: the clamped tensors of one batch.
        T: inference steps (default: the learner's T).
        clamp: the clamp set (default: the learner's).
        labels: class labels: the initializer then runs as in training (average and hybrid
            start from their class means; without labels they fall back to forward).
        title: the run's name in the figure (default: ``"<init> init"``).
        init: initialize with this (a name or an initializer) instead of the learner's.
    """
    from pcgraph.engine import solve_inference

    net = learner.net
    clamp_set = learner.clamp if clamp is None else net.resolve_clamp(clamp)
    steps = learner.T if T is None else T
    # with labels, the initializer runs as in training (average and hybrid read class means)
    train = labels is not None
    start = learner.infer(data, clamp=clamp_set, T=0, labels=labels, train=train, init=init)
    x = start.states.clone()
    frames = [_measure(net, x)]
    for _ in range(steps):
        solve_inference(net, x, clamp_set, 1, lr=learner.lr_neurons)  # in place
        frames.append(_measure(net, x))
    return FlowTrace(
        spec=net.spec,
        clamp=frozenset(clamp_set),
        title=title or f"{getattr(init, 'name', init) or learner.initializer.name} init",
        node_energy=np.stack([f[0] for f in frames]),
        edge_message=np.stack([f[1] for f in frames]),
    )


def animate_flow(
    traces: FlowTrace | Sequence[FlowTrace],
    path: PathLike,
    *,
    fps: int = 3,
    dpi: int = 90,
    columns: int | None = None,
    step: int | None = None,
) -> Path:
    """Animate one or more :class:`FlowTrace` s of the same graph side by side, one frame per
    inference step: node colours follow the energy per sample, edge colours and widths the
    message size per sample, both on log scales fixed across panels and frames.

    Args:
        traces: the runs (the same graph, the same number of steps).
        path: ``.gif`` for a GIF, ``.html`` for a page with a step slider and play buttons,
            ``.png``, ``.pdf`` or ``.svg`` for a still of one step.
        fps: frames per second.
        dpi: resolution of the frames.
        columns: panels per row (default: 2 for wide graphs such as chains, else up to 3).
        step: the step a still shows (default: the last).

    Returns:
        the path written (atomically).
    """
    runs = [traces] if isinstance(traces, FlowTrace) else list(traces)
    if not runs:
        raise ValueError("animate_flow needs at least one FlowTrace")
    spec = runs[0].spec
    frames = runs[0].node_energy.shape[0]
    for run in runs:
        if run.spec.name != spec.name or run.node_energy.shape[0] != frames:
            raise ValueError(
                f"every trace must be of graph {spec.name!r} with {frames - 1} steps; "
                f"{run.title!r} is of {run.spec.name!r} with {run.node_energy.shape[0] - 1}"
            )
    suffix = Path(path).suffix.lower()
    if suffix not in FLOW_SUFFIXES:
        raise ValueError(
            f"animate_flow writes .gif or .html (animations) or {', '.join(STILL_SUFFIXES)} (a "
            f"still), not {suffix or 'no suffix'!r}"
        )
    still = frames - 1 if step is None else step
    if suffix in STILL_SUFFIXES and not 0 <= still < frames:
        raise ValueError(f"step must be in 0 … {frames - 1}, got {step}")
    carries = has_energy(spec)
    e_norm = energy_norm(
        np.concatenate([r.node_energy[:, carries].ravel() for r in runs]), log=True, decades=5
    )
    m_norm = energy_norm(
        np.concatenate([r.edge_message.ravel() for r in runs]), log=True, decades=5
    )
    m_cmap = colormaps[MESSAGE_CMAP]
    width, height = graph_figure_size(spec)
    if columns is None:
        columns = min(len(runs), 2 if width > 1.6 * height else 3)
    rows = math.ceil(len(runs) / columns)
    fig = new_figure(width * columns + 1.8, (height + 0.5) * rows)
    grid = fig.subplots(rows, columns, squeeze=False)
    axes = list(grid.ravel()[: len(runs)])
    for spare in grid.ravel()[len(runs) :]:
        spare.set_axis_off()
    drawn = [
        render_graph(ax, spec, clamp=run.clamp, values=run.node_energy[0], norm=e_norm)
        for ax, run in zip(axes, runs, strict=True)
    ]
    for art in drawn:  # the role legend would call the edges' colours "cycle" colours
        legend = art.ax.get_legend()
        if legend is not None:
            legend.remove()
    fig.supxlabel(
        "square: input · diamond: output · circle: latent · thick border: clamped · "
        "edge colour and width: the error message it carries back (grey: none)",
        fontsize=9,
    )
    fig.colorbar(
        ScalarMappable(norm=e_norm, cmap=ENERGY_CMAP), ax=list(grid.ravel()), shrink=0.6, pad=0.01,
        label="node energy per sample",
    )  # fmt: skip
    fig.colorbar(
        ScalarMappable(norm=m_norm, cmap=m_cmap), ax=list(grid.ravel()), shrink=0.6, pad=0.01,
        label="edge message per sample",
    )  # fmt: skip
    m_lo, m_hi = float(m_norm.vmin or 1e-3), float(m_norm.vmax or 1.0)
    lo, hi = math.log10(m_lo), math.log10(m_hi)

    def show(t: int) -> list[Any]:
        for run, art in zip(runs, drawn, strict=True):
            for i, node in enumerate(spec.nodes):
                value = float(run.node_energy[t, i])
                art.nodes[node.name].set_facecolor(energy_face(value, bool(carries[i]), e_norm))
                text = "no energy" if not carries[i] else f"E={value:.3g}"
                art.labels[node.name].set_text(f"{node.name}\n{text}")
            for e, patch in art.edges.items():
                size = float(run.edge_message[t, e])
                if not size > m_lo * 1.0001:
                    patch.set_color(_QUIET)
                    patch.set_linewidth(_WIDTH[0])
                    continue
                frac = (math.log10(min(size, m_hi)) - lo) / max(hi - lo, 1e-12)
                patch.set_color(m_cmap(float(m_norm(size))))
                patch.set_linewidth(_WIDTH[0] + frac * (_WIDTH[1] - _WIDTH[0]))
            art.ax.set_title(f"{run.title}\nstep {t}/{frames - 1}", fontsize=11)
        return []

    if suffix in STILL_SUFFIXES:
        show(still)
        with atomic_path(path) as tmp:
            fig.savefig(str(tmp), dpi=dpi, format=suffix[1:])
        return Path(path)
    show(0)
    animation = FuncAnimation(fig, show, frames=range(frames), blit=False, repeat=False)
    with atomic_path(path) as tmp:
        if suffix == ".gif":
            animation.save(str(tmp), writer=PillowWriter(fps=fps), dpi=dpi)
        else:
            fig.set_dpi(dpi)
            # the page loads nothing from another host (matplotlib's links an icon font)
            page = offline_page(animation.to_jshtml(fps=fps, default_mode="once"))
            Path(tmp).write_text(
                "<!doctype html><html><head><meta charset='utf-8'>"
                f"<title>{spec.name} — energy flow</title></head><body>{page}</body></html>",
                encoding="utf-8",
            )
    return Path(path)
