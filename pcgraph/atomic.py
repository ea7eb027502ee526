"""Atomic file writes, one mechanism for the whole package: write to a temporary file in the
target's folder, then ``os.replace`` it over the target — a crash never leaves a half-written
file, and the old file stays intact until the new one is complete."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_path", "atomic_write_text", "atomic_writer"]


def _file_mode() -> int:
    """The mode a normally created file gets (0o666 minus the umask); mkstemp gives 0o600."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_path(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path next to ``dest`` with the same suffix (so writers that infer the format
    from it work); on success it replaces ``dest``, on failure it is removed. The folder is
    created if missing."""
    target = Path(dest)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _file_mode())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_writer(dest: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary handle whose content replaces ``dest`` atomically when the block succeeds."""
    with atomic_path(dest) as tmp, open(tmp, "wb") as handle:
        yield handle


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
