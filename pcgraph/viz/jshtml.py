"""Matplotlib's step-slider page (``FuncAnimation.to_jshtml``) made self-contained.

The page matplotlib writes links font-awesome from a CDN for its buttons' icons, so offline its
play buttons are blank. :func:`offline_page` replaces that link with a few CSS rules that draw
the same buttons as text characters, and scales the frames to the window.
"""

from __future__ import annotations

import re

__all__ = ["offline_page"]

_FONT_AWESOME = re.compile(r'<link rel="stylesheet"\s+href="[^"]*font-awesome[^"]*">')
_SLIDER_STYLE = """<style>
  img { max-width: 100%; height: auto; }
  .fa { font-style: normal; display: inline-block; min-width: 1.2em; }
  .fa-flip-horizontal { transform: scaleX(-1); }
  .fa-minus::before { content: "\\2212"; }
  .fa-plus::before { content: "+"; }
  .fa-fast-backward::before { content: "\\21E4"; }
  .fa-step-backward::before { content: "\\2039"; }
  .fa-play::before { content: "\\25B6"; }
  .fa-pause::before { content: "\\275A\\275A"; }
  .fa-step-forward::before { content: "\\203A"; }
  .fa-fast-forward::before { content: "\\21E5"; }
</style>"""


def offline_page(page: str) -> str:
    """``page`` (a ``to_jshtml`` page) with its icon font replaced by text buttons.

    Raises:
        RuntimeError: the page has no font-awesome link to replace (matplotlib changed its page),
            so that a page loading something from another host is never written silently.
    """
    text, found = _FONT_AWESOME.subn(lambda _: _SLIDER_STYLE, page)
    if not found and _SLIDER_STYLE not in text:
        raise RuntimeError("matplotlib's slider page changed: update pcgraph/viz/jshtml.py")
    return text
