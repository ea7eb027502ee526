"""Checks of data at pcgraph's boundary: images, class labels and argument types.

Every check raises :class:`DataError` (or, for an option, :class:`ConfigError`) naming the
place (``where``: the dataset and split, a file, a DataLoader batch), the item and the value,
and the fix. Images of dtype uint8 (0 … 255) are scaled to [0, 1], the range
:class:`~pcgraph.data.ImageDataset` documents, with a warning that names the explicit
conversion (``images.float() / 255``); complex values are refused.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch

from pcgraph.data.errors import DataError

__all__ = [
    "UINT8_NOTE",
    "as_float_images",
    "check_labels",
    "check_path",
    "check_whole",
    "data_name",
]

UINT8_NOTE = (
    "are uint8 (0 … 255); pcgraph scales them to [0, 1] (÷ 255). Convert them yourself "
    "(images.float() / 255, or torchvision's ToTensor()) to silence this warning"
)


def data_name(name: str, split: str) -> str:
    """How messages name a dataset: ``the train data`` or ``cifar10 (test)``."""
    return f"the {split} data" if name in ("data", "") else f"{name} ({split})"


def as_float_images(images: torch.Tensor, where: str, *, warn: bool = True) -> torch.Tensor:
    """``images`` as float32: uint8 scaled by 1/255 (with a warning when ``warn``), bool as
    0/1, floats as they are; complex, other integers (0 … 255 or 0 … 1? pcgraph cannot tell)
    and empty refused."""
    if not isinstance(images, torch.Tensor):
        raise DataError(f"{where}: the inputs are a {type(images).__name__}, not a tensor")
    if images.is_complex():
        raise DataError(
            f"{where}: the inputs are {images.dtype}; pcgraph trains on real values — pass "
            "images.real, images.abs() or the two parts as channels"
        )
    if images.numel() == 0:
        raise DataError(
            f"{where}: the inputs of shape {list(images.shape)} are empty; pass at least one "
            "sample with at least one value"
        )
    if images.dtype == torch.uint8:
        if warn:
            warnings.warn(f"{where}: the images {UINT8_NOTE}", UserWarning, stacklevel=3)
        return images.to(torch.float32).div_(255.0)
    if not images.is_floating_point() and images.dtype != torch.bool:
        # int8 … int64 (any bool is 0/1 already): pixels 0 … 255 or values already in [0, 1]
        # cannot be told apart, and training on 0 … 255 would be silently wrong
        raise DataError(
            f"{where}: the inputs are {images.dtype} (values {int(images.min())} … "
            f"{int(images.max())}); pcgraph reads images as real numbers in [0, 1] — pass "
            "images.float() / 255 for pixels 0 … 255, images.float() for values already in "
            "[0, 1], or uint8 pixels, which are scaled for you"
        )
    return images.to(torch.float32)


def check_labels(labels: Any, where: str, *, num_classes: int | None = None) -> torch.Tensor:
    """Class labels [N] as int64, every one a whole number in [0, num_classes).

    Raises:
        DataError: labels that are not a 1-D tensor of integers (a float such as 2.5 is
            refused, never truncated), empty, or outside [0, C) — naming ``where``, the index
            and the value.
    """
    if not isinstance(labels, torch.Tensor):
        try:
            labels = torch.as_tensor(labels)
        except (TypeError, ValueError, RuntimeError):
            raise DataError(
                f"{where}: the labels ({type(labels).__name__}) are not class indices; pass "
                "integers 0 … C−1, one per sample"
            ) from None
    if labels.dim() != 1:
        raise DataError(
            f"{where}: labels of shape {list(labels.shape)}; pass one class index per sample [N]"
        )
    if labels.numel() == 0:
        raise DataError(f"{where}: there are no labels (empty data); pass at least one sample")
    if labels.is_complex() or labels.dtype == torch.bool or labels.is_floating_point():
        flat = labels.detach().cpu()
        if flat.is_floating_point():
            bad = (flat != flat.round()).nonzero()
            i = int(bad[0]) if len(bad) else 0
        else:
            i = 0
        raise DataError(
            f"{where}: labels are {labels.dtype}; label {flat[i].item()!r} (sample {i}) is not "
            "a class index — pass integer class indices (a float label is never truncated to a "
            "class; use labels.long() where they are whole numbers)"
        )
    labels = labels.detach().to("cpu", torch.int64)
    low, high = int(labels.min()), int(labels.max())
    classes = high + 1 if num_classes is None else num_classes
    if low < 0 or high >= classes:
        i = int((labels < 0).nonzero()[0]) if low < 0 else int((labels >= classes).nonzero()[0])
        raise DataError(
            f"{where}: label {int(labels[i])} is outside the classes 0 … {classes - 1} (sample "
            f"{i}); fix the labels or use a graph whose output node has one value per class"
        )
    return labels


def check_whole(
    value: Any, name: str, *, low: int | None = None, error: type[Exception] = DataError
) -> int:
    """``value`` if it is an int (not a bool, a float or a string) ≥ ``low``, else ``error``
    naming ``name`` and the value."""
    if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
        bound = "" if low is None else f" ≥ {low}"
        raise error(f"{name} must be a whole number{bound}, got {type(value).__name__} {value!r}")
    return value


def check_path(value: Any, name: str, *, error: type[Exception] = DataError) -> Path:
    """``value`` as a Path if it is a str or os.PathLike, else ``error`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, str | os.PathLike):
        raise error(
            f"{name} must be a folder or file path (a str or pathlib.Path), got "
            f"{type(value).__name__} {value!r}"
        )
    return Path(value)
