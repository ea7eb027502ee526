"""pcgraph.viz.record_flow / animate_flow: energies per sample and message sizes along edges.

Oracles: the energy per sample is the network's autograd energy divided by the batch size; the
message an edge j → i sends back is J_fᵀ δ_i with δ_i = −∂E_i/∂μ_i, for a linear edge δ_i W, which
for a gaussian node is w_i ε_i W (hand-computed here); after a forward sweep every hidden error is
0, so only the edge into the clamped output carries a message at t = 0 (Proposition 3.2).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import pcgraph as pc
from pcgraph.viz import animate_flow, record_flow

F64 = torch.float64


def _learner(init: str) -> pc.PCLearner:
    net = pc.compile(pc.mlp([6, 5, 4, 3], activation="tanh"), dtype=F64, seed=0)
    return pc.PCLearner(net, init=init, T=3, lr_neurons=0.1)


def _batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {
        "x": torch.randn(7, 6, generator=g, dtype=F64),
        "y": torch.randn(7, 3, generator=g, dtype=F64),
    }


def test_energies_are_per_sample_and_messages_are_delta_w() -> None:
    learner = _learner("zero")
    net, batch = learner.net, _batch()
    trace = record_flow(learner, batch, T=2)
    assert trace.node_energy.shape == (3, 4) and trace.edge_message.shape == (3, 3)
    x = net.new_states(7).detach()
    net.write(x, batch)  # zero init: the free nodes start at 0
    want = (net.node_energies(x) / 7).detach().numpy()
    np.testing.assert_allclose(trace.node_energy[0], want, rtol=1e-12)
    # edge h1 → h2 (index 1): message δ_h2 W with δ = ε = x_h2 − μ_h2 (gaussian, w = 1)
    with torch.no_grad():
        eps = net.view(x, "h2") - net.prediction(x, 2)
        message = eps @ net.kernels[1].weight
    rms = float(message.square().sum().div(7).sqrt())
    assert trace.edge_message[0, 1] == pytest.approx(rms, rel=1e-12)
    # after one SGD step the recorded energy is that of solve_inference's states
    x1 = x.clone()
    pc.solve_inference(net, x1, "train", 1, lr=0.1)
    np.testing.assert_allclose(trace.node_energy[1], (net.node_energies(x1) / 7).detach().numpy())


def test_after_a_forward_sweep_only_the_output_edge_carries_a_message() -> None:
    trace = record_flow(_learner("forward"), _batch(), T=2)
    assert trace.title == "forward init"
    np.testing.assert_allclose(trace.node_energy[0, :3], 0.0, atol=1e-24)  # x, h1, h2
    assert trace.node_energy[0, 3] > 0
    np.testing.assert_allclose(trace.edge_message[0, :2], 0.0, atol=1e-24)
    assert trace.edge_message[0, 2] > 0
    assert trace.edge_message[1, 1] > 0  # the error front: one edge back per step


def test_animate_flow_writes_a_gif_and_an_html_player(tmp_path: Path) -> None:
    runs = [record_flow(_learner(i), _batch(), T=2) for i in ("zero", "forward")]
    gif = animate_flow(runs, tmp_path / "flow.gif")
    from PIL import Image

    with Image.open(gif) as image:
        assert image.n_frames == 3
    page = animate_flow(runs, tmp_path / "flow.html").read_text()
    assert "<input" in page and "animation" in page.lower()  # the step slider
    with pytest.raises(ValueError, match=r"\.gif or \.html"):
        animate_flow(runs, tmp_path / "flow.mp4")
    other = record_flow(_learner("zero"), _batch(), T=1)
    with pytest.raises(ValueError, match="2 steps"):
        animate_flow([runs[0], other], tmp_path / "x.gif")
