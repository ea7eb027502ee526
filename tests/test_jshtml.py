"""pcgraph.viz.jshtml and animate_flow's .html: the step-slider page references no other host,
so its play buttons work offline (matplotlib's own page links an icon font from a CDN)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import pcgraph as pc
from pcgraph.viz import animate_flow, record_flow
from pcgraph.viz.jshtml import offline_page

_HOST = re.compile(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", re.IGNORECASE)


def test_animate_flow_html_references_no_other_host(tmp_path: Path) -> None:
    spec = pc.mlp([4, 3, 2], activation="tanh")
    learner = pc.PCLearner(pc.compile(spec, seed=0), init="forward", T=2, lr_neurons=0.1)
    batch = {"x": torch.randn(5, 4, generator=torch.Generator().manual_seed(0)),
             "y": torch.randn(5, 2, generator=torch.Generator().manual_seed(1))}  # fmt: skip
    page = animate_flow([record_flow(learner, batch, T=2)], tmp_path / "flow.html").read_text()
    assert "<input" in page  # still the step slider
    assert not _HOST.findall(page), _HOST.findall(page)[:5]
    # the buttons matplotlib draws with font-awesome icons are text characters now
    for icon in ("fa-play", "fa-pause", "fa-step-forward", "fa-fast-backward"):
        assert icon in page and f".{icon}::before" in page


def test_offline_page_replaces_the_icon_font_and_refuses_an_unknown_page() -> None:
    link = '<link rel="stylesheet" href="https://cdn.example.org/font-awesome/4.4.0/a.min.css">'
    page = offline_page(f"<head>{link}</head><body><i class='fa fa-play'></i></body>")
    assert "cdn.example.org" not in page and ".fa-play::before" in page
    assert offline_page(page) == page  # already offline: unchanged
    with pytest.raises(RuntimeError, match="slider page changed"):
        offline_page("<html><body>no icon font here</body></html>")
