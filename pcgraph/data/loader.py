"""Find, read and cache the MNIST-family datasets: :func:`load_dataset`, :func:`embedded_dataset`.

Search order for ``load_dataset(name, split)`` — the first folder holding the split's two
files (``train-images-idx3-ubyte[.gz]`` + ``train-labels-idx1-ubyte[.gz]``, or the ``t10k-``
pair) wins:

1. ``root=`` if given (also ``root/<name>`` and torchvision's ``root/<Name>/raw``); files
   missing there is an error, never a silent fall-through;
2. ``$PCGRAPH_DATA`` (same three layouts); set to a folder that does not exist, it is an error
   (never a silent fall-through to the other places);
3. the user cache, ``$XDG_CACHE_HOME/pcgraph/<name>`` or ``~/.cache/pcgraph/<name>``;
4. system folders, ``/usr/share/datasets/<name>`` (Debian's ``dataset-fashion-mnist``) and
   ``/usr/local/share/datasets/<name>``;
5. with ``download=True``, a checksum-verified download into the user cache;
6. with ``allow_embedded=True`` (Fashion-MNIST only), the subset shipped in the package.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from pcgraph.data import sources
from pcgraph.data.checks import check_path
from pcgraph.data.datasets import ImageDataset
from pcgraph.data.errors import DataError
from pcgraph.data.idx import read_idx

__all__ = ["EMBEDDED_SOURCE", "clear_cache", "embedded_dataset", "load_dataset"]

EMBEDDED_SOURCE = "embedded subset"
_SPLITS = ("train", "test")
_SIDE = 28
_NUM_CLASSES = 10


def _check_split(split: str) -> str:
    """Return ``split`` if valid, else raise a DataError."""
    if split not in _SPLITS:
        raise DataError(f"unknown split {split!r}; choose 'train' or 'test'")
    return split


@functools.lru_cache(maxsize=8)
def _read_pair(
    images: str, labels: str, stamp: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read and validate an image/label file pair (cached by path, size and mtime).

    Args:
        images: Path of the IDX image file.
        labels: Path of the IDX label file.
        stamp: Sizes and modification times; part of the cache key so edits are noticed.

    Returns:
        uint8 images ``[N, 28, 28]`` and int64 labels ``[N]``.
    """
    del stamp
    imgs = read_idx(images, ndim=3)
    labs = read_idx(labels, ndim=1)
    if imgs.dtype != np.uint8 or imgs.shape[1:] != (_SIDE, _SIDE):
        raise DataError(
            f"{images}: expected uint8 images of shape [N, {_SIDE}, {_SIDE}], got "
            f"{imgs.dtype} {list(imgs.shape)}; this is not an MNIST-style image file"
        )
    if labs.dtype != np.uint8:
        raise DataError(f"{labels}: expected uint8 labels, got {labs.dtype}")
    if labs.shape[0] != imgs.shape[0]:
        raise DataError(
            f"{labels}: holds {labs.shape[0]} labels but {images} holds {imgs.shape[0]} "
            "images; the two files come from different datasets or one is damaged"
        )
    if labs.size and int(labs.max()) >= _NUM_CLASSES:
        raise DataError(
            f"{labels}: label {int(labs.max())} is outside [0, {_NUM_CLASSES}); "
            "this is not a 10-class label file"
        )
    return torch.from_numpy(imgs), torch.from_numpy(labs.astype(np.int64))


def clear_cache() -> None:
    """Forget every dataset read so far in this process."""
    _read_pair.cache_clear()


def _load_files(images: Path, labels: Path, *, name: str, split: str, source: str) -> ImageDataset:
    """Build an ImageDataset from two IDX files, reusing the in-process cache."""
    stat_i, stat_l = images.stat(), labels.stat()
    stamp = (stat_i.st_size, stat_i.st_mtime_ns, stat_l.st_size, stat_l.st_mtime_ns)
    raw_images, raw_labels = _read_pair(str(images.resolve()), str(labels.resolve()), stamp)
    return ImageDataset(
        images=raw_images.unsqueeze(1).to(torch.float32).div_(255.0),
        labels=raw_labels.clone(),
        name=name,
        split=split,
        source=source,
        num_classes=_NUM_CLASSES,
    )


def _layouts(base: Path, spec: sources.DatasetSpec) -> list[Path]:
    """Folders searched under a user-given base: itself, ``<name>``, torchvision's layout."""
    return [base, base / spec.name, base / spec.torchvision_dir / "raw"]


def _search(dirs: list[Path], split: str) -> tuple[Path, Path] | None:
    """Return the first folder's (images, labels) pair that is complete, else None."""
    for directory in dirs:
        images, labels = sources.find_in(directory, split)
        if images is not None and labels is not None:
            return images, labels
    return None


def _wanted(split: str) -> str:
    """Describe the two files a split needs."""
    images, labels = sources.FILES[split]
    return f"{images}[.gz] and {labels}[.gz]"


def _how_to_provide(
    spec: sources.DatasetSpec, split: str, *, download: bool = True, embedded: bool = True
) -> str:
    """List the ways a user can make a dataset available.

    Args:
        spec: The dataset.
        split: The split wanted.
        download: Mention ``download=True``.
        embedded: Mention the embedded subset (Fashion-MNIST only).

    Returns:
        The ways, joined by "; ".
    """
    ways = [
        f"pass root=DIR where DIR holds {_wanted(split)}",
        "set PCGRAPH_DATA=DIR (DIR or DIR/<name> holding the files)",
        f"copy the files to {sources.cache_dir(spec.name)}",
    ]
    if spec.embedded:
        ways.append("install the Debian/Ubuntu package dataset-fashion-mnist")
    if download:
        ways.append("pass download=True")
    if spec.embedded and embedded:
        ways.append("pass allow_embedded=True to use the bundled 5000/1000-image subset")
    return "; ".join(ways)


def embedded_dataset(split: str = "train") -> ImageDataset:
    """Load the class-balanced Fashion-MNIST subset shipped with pcgraph.

    Args:
        split: ``"train"`` (5,000 images, 500 per class) or ``"test"`` (1,000, 100 per class).

    Returns:
        The subset, with ``source == "embedded subset"``.
    """
    split = _check_split(split)
    found = sources.find_in(sources.EMBEDDED_DIR, split)
    if found[0] is None or found[1] is None:
        raise DataError(
            f"{sources.EMBEDDED_DIR}: the embedded Fashion-MNIST subset is missing "
            f"({_wanted(split)}); reinstall pcgraph or run scripts/make_embedded_subset.py"
        )
    return _load_files(
        found[0], found[1], name="fashion-mnist", split=split, source=EMBEDDED_SOURCE
    )


def load_dataset(
    name: str = "fashion-mnist",
    split: str = "train",
    *,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    allow_embedded: bool = True,
) -> ImageDataset:
    """Load a dataset split from the first place that holds its two IDX files.

    The places, in order: ``root`` (also ``root/<name>`` and torchvision's ``root/<Name>/raw``),
    ``$PCGRAPH_DATA`` (same layouts), the user cache (``$XDG_CACHE_HOME/pcgraph/<name>`` or
    ``~/.cache/pcgraph/<name>``), ``/usr/share/datasets/<name>`` and
    ``/usr/local/share/datasets/<name>``, a checksum-verified download (``download=True``), and
    the subset shipped in the package (``allow_embedded=True``, Fashion-MNIST only). A ``root``
    or ``$PCGRAPH_DATA`` that lacks the files is an error, never a silent fall-through.

    Args:
        name: ``"fashion-mnist"``, ``"mnist"`` or ``"kmnist"``.
        split: ``"train"`` or ``"test"``.
        root: A folder that must hold the files; disables every other source.
        download: Download into the user cache when no local copy is found.
        allow_embedded: Fall back to the bundled Fashion-MNIST subset (with a warning).

    Returns:
        The dataset; ``.source`` tells where it came from.

    Raises:
        DataError: Nothing usable was found; the message lists where it looked and the fixes.
    """
    spec = sources.get_spec(name)
    split = _check_split(split)

    def load(pair: tuple[Path, Path]) -> ImageDataset:
        return _load_files(
            pair[0], pair[1], name=spec.name, split=split, source=str(pair[0].parent)
        )

    if root is not None:
        base = check_path(root, "load_dataset: root").expanduser()
        dirs = _layouts(base, spec)
        pair = _search(dirs, split)
        if pair is None:
            raise DataError(
                f"root={os.fspath(root)!r}: no {spec.name} {split} files; looked for "
                f"{_wanted(split)} in {', '.join(map(str, dirs))} — put the files there, "
                "or drop root= to search the default places"
            )
        return load(pair)

    looked: list[str] = []
    env = os.environ.get("PCGRAPH_DATA")
    if env and not Path(env).expanduser().is_dir():
        # a location the user named must never be passed over silently for another one
        raise DataError(
            f"PCGRAPH_DATA={env!r} is not an existing folder; create it and put the "
            f"{spec.name} files there ({_wanted(split)}), or unset PCGRAPH_DATA"
        )
    places: list[Path] = _layouts(Path(env).expanduser(), spec) if env else []
    if not env:
        looked.append("$PCGRAPH_DATA (not set)")
    places.append(sources.cache_dir(spec.name))
    places.extend(directory / spec.name for directory in sources.SYSTEM_DIRS)
    pair = _search(places, split)
    if pair is not None:
        return load(pair)
    looked.extend(map(str, places))

    fallback = allow_embedded and spec.embedded
    if download:
        try:
            target = sources.download_split(spec, split)
        except DataError as err:
            if not fallback:
                ways = _how_to_provide(spec, split, download=False)
                raise DataError(f"{err}. Other ways: {ways}") from None
            warnings.warn(
                f"{err}. Falling back to the embedded Fashion-MNIST subset "
                f"(5000 train / 1000 test images).",
                stacklevel=2,
            )
            return embedded_dataset(split)
        pair = _search([target], split)
        if pair is None:  # pragma: no cover - download_split guarantees both files
            raise DataError(f"{target}: download finished but the files are missing")
        return load(pair)

    if fallback:
        warnings.warn(
            f"{spec.name} {split} split not found (looked in {', '.join(looked)}); using the "
            "embedded subset (5000 train / 1000 test images). For the full dataset: "
            + _how_to_provide(spec, split, embedded=False),
            stacklevel=2,
        )
        return embedded_dataset(split)
    note = "" if spec.embedded else " (the embedded subset covers fashion-mnist only)"
    raise DataError(
        f"{spec.name} {split} split not found; looked in {', '.join(looked)}. "
        f"To provide it: {_how_to_provide(spec, split)}{note}"
    )
