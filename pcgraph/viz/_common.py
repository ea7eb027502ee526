"""Shared helpers: pyplot-free figures, atomic saving, array conversion, energy colour scales."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    import torch

    from pcgraph.compiler import PCNetwork

import numpy as np
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure

from pcgraph.schema import GraphSpec

__all__ = [
    "ArrayLike",
    "PathLike",
    "SpecLike",
    "as_spec",
    "energy_norm",
    "energy_vector",
    "has_energy",
    "new_figure",
    "save_figure",
    "to_numpy",
]

from pcgraph.atomic import atomic_path

PathLike = str | os.PathLike[str]
#: Numbers to draw: a torch tensor (any device), a numpy array, or nested lists of floats.
ArrayLike = Union["torch.Tensor", np.ndarray, Sequence[float], Sequence[Sequence[float]]]
#: A graph to draw: a GraphSpec, a compiled PCNetwork (its ``.spec``) or a YAML path.
SpecLike = Union[GraphSpec, "PCNetwork", str, "os.PathLike[str]"]
# A log colour scale once the largest energy exceeds the smallest positive one by this factor.
LOG_RANGE = 100.0


def new_figure(width: float, height: float) -> Figure:
    """A Figure that pyplot never sees: nothing to close, nothing shown, safe headless."""
    return Figure(figsize=(width, height), layout="constrained")


def save_figure(fig: Figure, path: PathLike, *, dpi: int = 150) -> Path:
    """Save ``fig`` atomically; the format follows the suffix (PNG when there is none).

    Returns:
        the path written.
    """
    target = Path(path)
    fmt = target.suffix.lstrip(".").lower() or "png"
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight", pad_inches=0.1)
    return target


def as_spec(obj: SpecLike) -> GraphSpec:
    """A GraphSpec from a spec, anything with a ``.spec`` (a PCNetwork) or a YAML path."""
    if isinstance(obj, GraphSpec):
        return obj
    spec = getattr(obj, "spec", None)
    if isinstance(spec, GraphSpec):
        return spec
    if isinstance(obj, (str, os.PathLike)):
        return GraphSpec.from_yaml(obj)
    raise TypeError(f"expected a GraphSpec, a PCNetwork or a YAML path, got {type(obj).__name__}")


def to_numpy(values: ArrayLike) -> np.ndarray:
    """A float64 array from a tensor (any device), an array or nested lists."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=float)


def has_energy(spec: GraphSpec) -> np.ndarray:
    """[N] bools: which nodes carry energy (those with a parent; roots are never predicted)."""
    targets = {e.target for e in spec.edges}
    return np.array([n.name in targets for n in spec.nodes], dtype=bool)


def energy_vector(
    spec: GraphSpec, energies: Mapping[str, Any] | Sequence[float] | Any
) -> np.ndarray:
    """[N] energies in node order from a name→value mapping (missing names → NaN) or a [N] vector.

    Raises:
        ValueError: unknown names, or a vector whose length is not the node count.
    """
    names = spec.node_names
    if isinstance(energies, Mapping):
        unknown = [k for k in energies if k not in names]
        if unknown:
            raise ValueError(
                f"energies name unknown node(s) {', '.join(map(repr, unknown))}; "
                f"known nodes: {', '.join(names)}"
            )
        return np.array([float(to_numpy(energies[n])) if n in energies else np.nan for n in names])
    vec = to_numpy(energies).reshape(-1)
    if vec.shape[0] != len(names):
        raise ValueError(
            f"energies must have one value per node ({len(names)}: {', '.join(names)}), "
            f"got {vec.shape[0]}"
        )
    return vec


def energy_norm(
    values: np.ndarray, *, log: bool | None = None, decades: float | None = None
) -> Normalize:
    """A colour scale over the finite values; ``log=None`` picks log when the range is large.

    A log scale starts at the smallest positive value (smaller ones are clipped to it), or at
    most ``decades`` decades below the largest.
    """
    finite = values[np.isfinite(values)]
    positive = finite[finite > 0]
    if finite.size == 0:
        return Normalize(0.0, 1.0)
    lo, hi = float(finite.min()), float(finite.max())
    if log is None:
        log = positive.size > 0 and float(positive.max()) > LOG_RANGE * float(positive.min())
    if log and positive.size > 0:
        plo, phi = float(positive.min()), float(positive.max())
        if decades is not None:
            plo = max(plo, phi * 10.0**-decades)
        return LogNorm(plo, phi if phi > plo else plo * 10.0, clip=True)
    return Normalize(lo, hi if hi > lo else lo + 1.0)
