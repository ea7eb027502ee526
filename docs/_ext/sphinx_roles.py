"""A griffe extension for the API pages: render reST roles in docstrings as inline code.

pcgraph's docstrings are Google style but cross-reference with Sphinx roles
(:func:`solve_inference`, :class:`GraphSpec`), which Markdown would show verbatim. This turns each
``:role:`target``` (and ``:role:`~target```) into ```target```. Loaded by mkdocs.yml
(``extensions: [docs/_ext/sphinx_roles.py:SphinxRoles]``); it changes nothing in the package.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:func|class|data|mod|meth|attr|obj|exc|const):`~?([^`]+)`")


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles in every docstring as Markdown inline code."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(r"`\1`", obj.docstring.value)
