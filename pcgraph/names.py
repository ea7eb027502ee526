"""The names a topology may use for activations, with their aliases, without importing torch.

The schema validates against :data:`ACTIVATION_NAMES`; :mod:`pcgraph.activations` registers one
implementation under each of these names and aliases (and checks at import that none is
missing), so that the list of activations has one home and ``pcgraph check`` needs no torch.
"""

from __future__ import annotations

from pcgraph.registry import Registry

__all__ = ["ACTIVATION_NAMES"]

ACTIVATION_NAMES: Registry[str] = Registry("activation")
for _name, _aliases in (
    ("identity", ("linear", "none")),
    ("relu", ()),
    ("leaky_relu", ()),
    ("tanh", ()),
    ("sigmoid", ()),
    ("gelu", ()),
    ("silu", ("swish",)),
    ("softplus", ()),
    ("elu", ()),
):
    ACTIVATION_NAMES.register(_name, _name, aliases=_aliases)
