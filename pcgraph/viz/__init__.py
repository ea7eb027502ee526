"""Figures for predictive coding graphs: the graph itself, energy during inference, training
curves, reconstructions.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot (nothing to
close, nothing shown, safe on a headless machine) and, given ``path=``, also saves it atomically.
Importing this subpackage imports matplotlib; ``import pcgraph`` alone does not.
"""

from __future__ import annotations

from pcgraph.viz._common import save_figure
from pcgraph.viz.energy import animate_energy_flow, plot_energy_flow
from pcgraph.viz.flow import FlowTrace, animate_flow, record_flow
from pcgraph.viz.graph import draw_graph
from pcgraph.viz.history import plot_history
from pcgraph.viz.images import plot_reconstructions
from pcgraph.viz.layout import graph_layout, layer_depths

__all__ = [
    "FlowTrace",
    "animate_energy_flow",
    "animate_flow",
    "draw_graph",
    "graph_layout",
    "layer_depths",
    "plot_energy_flow",
    "plot_history",
    "plot_reconstructions",
    "record_flow",
    "save_figure",
]
