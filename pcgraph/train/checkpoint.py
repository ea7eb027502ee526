"""Checkpoints: parameters + graph spec + initializer memory + optimizer states.

Written atomically (temporary file, then ``os.replace``: a crash never leaves a broken file) and
loaded with ``torch.load(weights_only=True)`` (tensors and plain containers only, no arbitrary
pickle).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from pcgraph.atomic import atomic_path
from pcgraph.errors import CheckpointError
from pcgraph.schema import GraphSpec

__all__ = ["load_checkpoint", "save_checkpoint"]

FORMAT = "pcgraph-checkpoint-1"


def save_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> Path:
    """Write ``payload`` (tensors, numbers, strings, lists, dicts) to ``path`` atomically."""
    target = Path(path)
    with atomic_path(target) as tmp:
        torch.save({"format": FORMAT, **payload}, tmp)
    return target


def load_checkpoint(
    path: str | os.PathLike[str], *, spec: GraphSpec | None = None
) -> dict[str, Any]:
    """Read a checkpoint safely; with ``spec``, refuse one written for another graph."""
    source = Path(path)
    if not source.is_file():
        raise CheckpointError(
            f"{source}: no such checkpoint; train first (pcgraph train … "
            "--out DIR writes DIR/checkpoint.pt)"
        )
    try:
        data = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, or not a checkpoint at all
        raise CheckpointError(
            f"{source}: cannot be read as a pcgraph checkpoint ({exc}); "
            "it is corrupt or was written by another program"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(
            f"{source}: not a pcgraph checkpoint (format "
            f"{data.get('format') if isinstance(data, dict) else '?'!r})"
        )
    if spec is not None:
        stored = GraphSpec.from_yaml(str(data["spec_yaml"]))
        if stored != spec:
            raise CheckpointError(
                f"{source}: written for graph {stored.name!r}, which differs from "
                f"{spec.name!r} (nodes or edges changed); load it with its own spec "
                "(checkpoint['spec_yaml']) or retrain"
            )
    return data
