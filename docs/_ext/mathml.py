"""A mkdocs hook: the LaTeX that ``pymdownx.arithmatex`` (generic mode) marks up is turned into
MathML when the site is built, so that equations render with no JavaScript, no CDN and no font
files — every current browser renders MathML Core (Chromium since 109, Firefox, Safari).

``$…$`` is inline math and ``$$…$$`` (on lines of their own) display math, in pages and in
docstrings alike. A formula latex2mathml cannot read fails the build with the page and the
formula, instead of showing raw LaTeX.
"""

from __future__ import annotations

import html
import re
from typing import Any

from latex2mathml.converter import convert

_INLINE = re.compile(r'<span class="arithmatex">\\\((.*?)\\\)</span>', re.S)
_BLOCK = re.compile(r'<div class="arithmatex">\\\[(.*?)\\\]</div>', re.S)


def _mathml(latex: str, display: str, where: str) -> str:
    source = html.unescape(latex).strip()
    try:
        out = convert(source, display=display)
    except Exception as exc:  # latex2mathml raises several exception types
        raise ValueError(f"{where}: cannot render the formula {source!r}: {exc}") from exc
    # the LaTeX stays as the accessible text and for copy-paste
    return out.replace("<math ", f'<math class="pc-math" alttext="{html.escape(source)}" ', 1)


def on_page_content(content: str, page: Any, **_: Any) -> str:
    where = f"docs/{page.file.src_path}"
    content = _BLOCK.sub(lambda m: _mathml(m.group(1), "block", where), content)
    return _INLINE.sub(lambda m: _mathml(m.group(1), "inline", where), content)
