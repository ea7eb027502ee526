"""pcgraph.viz: figures render headless, show what they claim, and leave no pyplot state behind.

Expectations come from the graph (paths, clamp sets, dimensions) and the data passed in, never
from a previous rendering.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import networkx as nx
import numpy as np
import pytest
import torch
from matplotlib import colormaps
from matplotlib.collections import PathCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from PIL import Image

from pcgraph import GraphSpec, resolve_clamp
from pcgraph.viz import (
    animate_energy_flow,
    draw_graph,
    graph_layout,
    layer_depths,
    plot_energy_flow,
    plot_history,
    plot_reconstructions,
    save_figure,
)
from pcgraph.viz.graph import CYCLE_COLOR, ENERGY_CMAP, ROLE_STYLE

Topology = Callable[[str], Path]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _no_pyplot_figures() -> Iterator[None]:
    """Every viz call must leave pyplot without open figures."""
    assert plt.get_fignums() == []
    yield
    assert plt.get_fignums() == []


def _spec(topology, name: str) -> GraphSpec:
    return GraphSpec.from_yaml(topology(name))


def _render(fig: Figure) -> None:
    """Draw the whole figure (layout, text, colour bars) the way saving does."""
    fig.savefig(io.BytesIO(), format="png")


def _node(fig: Figure, name: str) -> PathCollection:
    found = [c for ax in fig.axes for c in ax.collections if c.get_gid() == f"node:{name}"]
    assert len(found) == 1, f"node {name} drawn {len(found)} times"
    return found[0]


def _edge(fig: Figure, source: str, target: str) -> Patch:
    gid = f"edge:{source}->{target}"
    found = [p for ax in fig.axes for p in ax.patches if p.get_gid() == gid]
    assert len(found) == 1, f"edge {source}→{target} drawn {len(found)} times"
    return found[0]


def _close(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return np.allclose(np.asarray(a), np.asarray(b), atol=1e-6)


# --- draw_graph ----------------------------------------------------------------------------------
@pytest.mark.parametrize("clamp", ["train", "generate"])
def test_draw_graph_marks_roles_clamps_and_cycles(
    topology: Topology, topology_name: str, clamp: str
) -> None:
    spec = _spec(topology, topology_name)
    fig = draw_graph(spec, clamp=clamp)
    _render(fig)
    clamped = resolve_clamp(spec, clamp)
    g = spec.to_networkx()
    for node in spec.nodes:
        artist = _node(fig, node.name)
        assert _close(tuple(artist.get_facecolor()[0]), to_rgba(ROLE_STYLE[node.role][0]))
        width = float(artist.get_linewidths()[0])
        free_width = 1.0
        assert (width > 2 * free_width) == (node.name in clamped), node.name
    for edge in spec.edges:
        # an edge lies on a cycle iff its target leads back to its source
        on_cycle = nx.has_path(g, edge.target, edge.source)
        red = _close(_edge(fig, edge.source, edge.target).get_edgecolor(), to_rgba(CYCLE_COLOR))
        assert red == on_cycle, edge.label
    title = fig.axes[0].get_title()
    assert spec.name in title and all(n in title for n in clamped)


def test_layout_runs_left_to_right(topology: Topology, topology_name: str) -> None:
    spec = _spec(topology, topology_name)
    pos = graph_layout(spec)
    depth = layer_depths(spec)
    g = spec.to_networkx()
    assert set(pos) == set(spec.node_names)
    for edge in spec.edges:
        if nx.has_path(g, edge.target, edge.source):
            assert depth[edge.source] == depth[edge.target]  # one ring per cycle group
        else:
            assert depth[edge.target] > depth[edge.source]
            assert pos[edge.target][0] > pos[edge.source][0], edge.label
    if nx.is_directed_acyclic_graph(g):
        # the layer is the longest path from a root
        for n in g.nodes:
            roots = [r for r in g if g.in_degree(r) == 0]
            paths = (p for r in roots for p in nx.all_simple_paths(g, r, n))
            longest = max((len(p) - 1 for p in paths), default=0)
            assert depth[n] == longest, n
    points = list(pos.values())
    assert len(set(points)) == len(points), "two nodes share a position"


def test_marker_size_grows_with_dimension(topology: Topology) -> None:
    spec = _spec(topology, "alexnet_cifar10")
    fig = draw_graph(spec)
    latent = [n for n in spec.nodes if n.role == "latent"]
    sizes = {n.name: float(_node(fig, n.name).get_sizes()[0]) for n in latent}
    by_dim = sorted(latent, key=lambda n: n.size)
    for small, big in itertools.pairwise(by_dim):
        if big.size > small.size:
            assert sizes[big.name] > sizes[small.name]


def test_energies_colour_nodes_on_a_log_scale(topology: Topology) -> None:
    spec = _spec(topology, "decoder4_fashion")  # z is a root: no energy
    values = {"z": 0.0, "h1": 0.125, "h2": 2.5, "h3": 83.0, "image": 1853.0}
    fig = draw_graph(spec, clamp="generate", energies=values)
    _render(fig)
    cmap = colormaps[ENERGY_CMAP]
    lo, hi = math.log(0.125), math.log(1853.0)  # four decades: log scale
    for name in ("h1", "h2", "h3", "image"):
        expected = cmap((math.log(values[name]) - lo) / (hi - lo))
        assert _close(tuple(_node(fig, name).get_facecolor()[0]), expected), name
    assert _close(tuple(_node(fig, "z").get_facecolor()[0]), to_rgba("white"))
    # the same energies as a vector in node order give the same picture
    vector = torch.tensor([values[n] for n in spec.node_names])
    fig2 = draw_graph(spec, clamp="generate", energies=vector)
    for name in spec.node_names:
        assert _close(
            tuple(_node(fig, name).get_facecolor()[0]), tuple(_node(fig2, name).get_facecolor()[0])
        )


def test_energies_linear_scale_when_range_is_small(topology: Topology, topology_name: str) -> None:
    spec = _spec(topology, topology_name)
    n = len(spec.nodes)
    energies = torch.linspace(1.0, 2.0, n)
    fig = draw_graph(spec, energies=energies)
    _render(fig)
    carries = {e.target for e in spec.edges}
    shown = [float(energies[i]) for i, name in enumerate(spec.node_names) if name in carries]
    lo, hi = min(shown), max(shown)
    for i, name in enumerate(spec.node_names):
        if name in carries:
            expected = colormaps[ENERGY_CMAP]((float(energies[i]) - lo) / (hi - lo))
            assert _close(tuple(_node(fig, name).get_facecolor()[0]), expected), name


def test_draw_graph_accepts_a_network_and_an_axes(topology: Topology) -> None:
    import pcgraph

    net = pcgraph.compile(str(topology("loop")), seed=0)
    fig = Figure()
    ax = fig.add_subplot()
    assert draw_graph(net, ax=ax) is fig
    _node(fig, "a")


def test_draw_graph_rejects_bad_energies(topology: Topology) -> None:
    spec = _spec(topology, "loop")
    with pytest.raises(ValueError, match="unknown node"):
        draw_graph(spec, energies={"nope": 1.0})
    with pytest.raises(ValueError, match="one value per node"):
        draw_graph(spec, energies=[1.0, 2.0])


def test_saving_writes_a_png_atomically(topology: Topology, tmp_path: Path) -> None:
    out = tmp_path / "sub" / "loop.png"
    draw_graph(_spec(topology, "loop"), path=out)
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000
    assert [p.name for p in out.parent.iterdir()] == ["loop.png"]  # no temp file left
    # a failed save leaves neither a partial file nor a temp file
    bad = tmp_path / "bad.notaformat"
    with pytest.raises(ValueError):
        save_figure(Figure(), bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]


# --- energy flow ---------------------------------------------------------------------------------
def _random_trace(spec: GraphSpec, steps: int) -> torch.Tensor:
    trace = torch.rand(steps + 1, len(spec.nodes)) * 10 + 0.1
    for i, name in enumerate(spec.node_names):
        if not spec.parents(name):
            trace[:, i] = 0.0  # roots carry no energy
    return trace


def test_plot_energy_flow_shows_the_trace(topology: Topology, tmp_path: Path) -> None:
    spec = _spec(topology, "mlp5_fashion")
    trace = _random_trace(spec, 6)
    fig = plot_energy_flow(trace, spec, path=tmp_path / "flow.png")
    assert (tmp_path / "flow.png").read_bytes().startswith(PNG_MAGIC)
    heat_ax, line_ax = fig.axes[0], fig.axes[1]
    heat = heat_ax.get_images()[0].get_array()
    assert heat.shape == (len(spec.nodes), 7)
    roots = [i for i, n in enumerate(spec.node_names) if not spec.parents(n)]
    assert all(heat.mask[i].all() for i in roots)
    others = [i for i in range(len(spec.nodes)) if i not in roots]
    np.testing.assert_allclose(heat[others].data, trace.T[others].numpy(), rtol=1e-6)
    assert any("no energy" in t.get_text() for t in heat_ax.get_yticklabels())
    lines = {line.get_label(): line for line in line_ax.get_lines()}
    assert set(lines) == {spec.node_names[i] for i in others} | {"total"}
    np.testing.assert_allclose(lines["total"].get_ydata(), trace.sum(1).numpy(), rtol=1e-5)


def test_plot_energy_flow_rejects_a_wrong_shape(topology: Topology) -> None:
    spec = _spec(topology, "mlp5_fashion")
    with pytest.raises(ValueError, match=r"\[T\+1, 6\]"):
        plot_energy_flow(torch.rand(5, 4), spec)


def test_animate_energy_flow_writes_one_frame_per_step(topology: Topology, tmp_path: Path) -> None:
    spec = _spec(topology, "loop")
    steps = 4
    out = tmp_path / "flow.gif"
    assert animate_energy_flow(_random_trace(spec, steps), spec, out, fps=8) == out
    with Image.open(out) as gif:
        assert gif.format == "GIF"
        assert gif.n_frames == steps + 1
    assert [p.name for p in tmp_path.iterdir()] == ["flow.gif"]


# --- history -------------------------------------------------------------------------------------
def _history(epochs: int, scale: float) -> dict[str, list[float]]:
    return {
        "epoch": list(range(epochs)),
        "energy_before": [scale * 100 / (e + 1) for e in range(epochs)],
        "energy_after": [scale * 10 / (e + 1) for e in range(epochs)],
        "test_accuracy": [0.5 + 0.04 * e for e in range(epochs)],
        "smm_total": [scale * 40 * (e + 1) for e in range(epochs)],
    }


def test_plot_history_one_panel_per_quantity(tmp_path: Path) -> None:
    hist = _history(5, 1.0)
    fig = plot_history(hist, path=tmp_path / "h.png")
    assert (tmp_path / "h.png").read_bytes().startswith(PNG_MAGIC)
    titles = [ax.get_title() for ax in fig.axes]
    assert len(titles) == 3  # energy, accuracy, SMMs; no MSE
    assert any("accuracy" in t for t in titles) and not any("MSE" in t for t in titles)
    acc_ax = next(ax for ax in fig.axes if "accuracy" in ax.get_title())
    (line,) = acc_ax.get_lines()
    np.testing.assert_allclose(line.get_xdata(), hist["epoch"])
    np.testing.assert_allclose(line.get_ydata(), hist["test_accuracy"])
    assert acc_ax.get_xlabel() == "epoch"


def test_plot_history_records_equal_columns() -> None:
    hist = _history(4, 1.0)
    records = [{k: v[i] for k, v in hist.items()} | {"init": "forward"} for i in range(4)]
    a, b = plot_history(hist), plot_history(records)
    for ax_a, ax_b in zip(a.axes, b.axes, strict=True):
        for la, lb in zip(ax_a.get_lines(), ax_b.get_lines(), strict=True):
            np.testing.assert_allclose(la.get_xydata(), lb.get_xydata())


def test_plot_history_overlays_runs() -> None:
    runs = {"forward": _history(5, 1.0), "random": _history(3, 2.0)}
    runs["zero"] = {"step": [0, 10, 20], "energy": [3.0, 2.0, 1.0], "test_mse": [0.3, 0.2, 0.1]}
    fig = plot_history(runs)
    by_title = {ax.get_title(): ax for ax in fig.axes}
    acc = next(ax for t, ax in by_title.items() if "accuracy" in t)
    assert len(acc.get_lines()) == 2  # forward and random recorded accuracy
    mse = next(ax for t, ax in by_title.items() if "MSE" in t)
    (line,) = mse.get_lines()
    np.testing.assert_allclose(line.get_xdata(), [0, 10, 20])  # the run's own step axis
    energy = next(ax for t, ax in by_title.items() if "energy" in t)
    assert len(energy.get_lines()) == 2 + 2 + 1
    # one legend of the runs for all panels, beside them, not over any panel's curves
    (legend,) = fig.legends
    assert {t.get_text() for t in legend.get_texts()} == {"forward", "random", "zero"}
    for ax in fig.axes:  # a panel's own legend names only its quantities (line styles)
        if ax.get_legend() is not None:
            names = {t.get_text() for t in ax.get_legend().get_texts()}
            assert not names & {"forward", "random", "zero"}


def test_plot_history_needs_a_known_quantity() -> None:
    with pytest.raises(ValueError, match="recognised keys"):
        plot_history({"epoch": [0, 1], "lr": [0.1, 0.1]})


# --- reconstructions -----------------------------------------------------------------------------
def test_plot_reconstructions_grid(tmp_path: Path) -> None:
    originals = torch.rand(10, 784) * 1.6 - 0.3  # outside [0, 1] on purpose
    recs = {"forward": originals * 0.5, "memory": originals + 0.2}
    fig = plot_reconstructions(originals, recs, n=6, path=tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes().startswith(PNG_MAGIC)
    assert len(fig.axes) == 3 * 6
    grid = np.array(fig.axes).reshape(3, 6)
    assert [ax.get_ylabel() for ax in grid[:, 0]] == ["original", "forward", "memory"]
    for r, source in enumerate([originals, recs["forward"], recs["memory"]]):
        for c in range(6):
            shown = grid[r, c].get_images()[0].get_array()
            expected = source[c].reshape(28, 28).clamp(0, 1).numpy()
            np.testing.assert_allclose(shown, expected, rtol=1e-6)
            assert grid[r, c].get_xticks().size == 0 and grid[r, c].get_yticks().size == 0


def test_plot_reconstructions_colour_and_shape_errors() -> None:
    fig = plot_reconstructions(torch.rand(2, 3, 8, 8), {"pc": torch.rand(2, 192)}, n=2,
                               image_shape=(3, 8, 8))  # fmt: skip
    assert fig.axes[0].get_images()[0].get_array().shape == (8, 8, 3)
    with pytest.raises(ValueError, match=r"reconstructions\['pc'\]"):
        plot_reconstructions(torch.rand(2, 784), {"pc": torch.rand(2, 100)})
