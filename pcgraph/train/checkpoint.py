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
from pcgraph.errors import CheckpointError, PCGraphError
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
    if source.suffix.lower() in (".yaml", ".yml"):
        raise CheckpointError(
            f"{source}: a topology, not a checkpoint; train it first (pcgraph train {source} "
            "--out DIR) and pass DIR/checkpoint.pt"
        )
    try:
        data = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, or not a checkpoint at all
        first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
        # torch's own advice for a refused pickle (weights_only=False) would run its code
        shown = first and "weights_only" not in first
        reason = type(exc).__name__ + (f": {first[:200]}" if shown else "")
        raise CheckpointError(
            f"{source}: cannot be read as a pcgraph checkpoint ({reason}); "
            "it is corrupt or was written by another program"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(
            f"{source}: not a pcgraph checkpoint (format "
            f"{data.get('format') if isinstance(data, dict) else '?'!r})"
        )
    _check_layout(source, data)
    try:
        stored = GraphSpec.from_yaml(str(data["spec_yaml"]))
    except PCGraphError as exc:
        raise CheckpointError(f"{source}: its stored graph spec is invalid ({exc})") from None
    if spec is not None and stored != spec:
        raise CheckpointError(
            f"{source}: written for graph {stored.name!r}, which differs from "
            f"{spec.name!r} (nodes or edges changed); load it with its own spec "
            "(checkpoint['spec_yaml']) or retrain"
        )
    return data


# key → the type its value must have (the layout Trainer.state_dict writes)
_LAYOUT: dict[str, type | tuple[type, ...]] = {
    "spec_yaml": str,
    "model": dict,
    "optimizer": dict,
    "initializer": dict,
    "learner": dict,
    "history": dict,
    "epoch": int,
    "task": str,
}
_NESTED = {"initializer": ("name", "state"), "learner": ("smm_total", "steps", "T")}


def _check_layout(source: Path, data: dict[str, Any]) -> None:
    """Every key a checkpoint needs, of its type, and finite weights (CheckpointError)."""
    for key, kind in _LAYOUT.items():
        if key not in data:
            raise CheckpointError(f"{source}: no {key!r} entry; the file is incomplete — retrain")
        if not isinstance(data[key], kind):
            raise CheckpointError(
                f"{source}: entry {key!r} is a {type(data[key]).__name__}; the file is corrupt"
            )
    for key, fields in _NESTED.items():
        missing = [f for f in fields if f not in data[key]]
        if missing:
            raise CheckpointError(f"{source}: {key!r} lacks {', '.join(missing)}; retrain")
    for name, value in data["model"].items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{source}: parameter {name!r} is not a tensor; corrupt file")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(
                f"{source}: parameter {name!r} holds NaN or infinite values (training diverged "
                "before it was saved); retrain with a smaller learning rate"
            )
