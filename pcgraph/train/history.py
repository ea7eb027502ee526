"""Training history: one list per metric, JSON-ready."""

from __future__ import annotations

import json
import os
from typing import Any

from pcgraph.atomic import atomic_write_text

__all__ = ["History"]


class History:
    """Per-epoch metrics as lists (``history["test_accuracy"][k]`` is epoch k's value)."""

    def __init__(self, data: dict[str, list[Any]] | None = None) -> None:
        self.data: dict[str, list[Any]] = {k: list(v) for k, v in (data or {}).items()}

    def append(self, **metrics: Any) -> None:
        """Add one row; a metric missing from earlier rows is padded with None."""
        rows = len(next(iter(self.data.values()), []))
        for key, value in metrics.items():
            self.data.setdefault(key, [None] * rows).append(value)
        for key, values in self.data.items():
            if key not in metrics:
                values.append(None)

    def __getitem__(self, key: str) -> list[Any]:
        return self.data[key]

    def __contains__(self, key: object) -> bool:
        return key in self.data

    def __len__(self) -> int:
        return len(next(iter(self.data.values()), []))

    def last(self) -> dict[str, Any]:
        """The latest row."""
        return {k: v[-1] for k, v in self.data.items() if v}

    def to_dict(self) -> dict[str, list[Any]]:
        """A plain dict of lists (what :func:`pcgraph.viz.plot_history` takes)."""
        return {k: list(v) for k, v in self.data.items()}

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write as JSON, atomically."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> History:
        """Read a history written by :meth:`save`."""
        with open(path, encoding="utf-8") as fh:
            return cls(json.load(fh))
