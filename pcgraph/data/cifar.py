"""CIFAR-10 from its official "python version" folder (``cifar-10-batches-py``), read safely.

The folder holds ``data_batch_1`` … ``data_batch_5`` (training, 10,000 images each),
``test_batch`` and ``batches.meta``; each batch is a pickled dict with ``data`` (uint8
[N, 3072], the red, green and blue planes of 32 × 32 images in turn) and ``labels`` (N ints in
0 … 9). pcgraph reads it itself rather than through ``torchvision.datasets.CIFAR10``:

- torchvision unpickles with :func:`pickle.load`, which runs whatever code a crafted file names;
  here a restricted unpickler builds only plain containers, bytes, numbers and NumPy arrays
  (as pickle protocols 2 to 5 write them);
- torchvision refuses any folder whose files do not have the official MD5 sums, so it cannot read
  the small generated folders the tests use (the real set cannot be downloaded in CI).

Nothing is downloaded: ``root`` must hold the folder (or be it). Get it from
https://www.cs.toronto.edu/~kriz/cifar.html (``cifar-10-python.tar.gz``, 163 MB) and unpack it.
"""

from __future__ import annotations

import numbers
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from pcgraph.data.checks import check_path
from pcgraph.data.datasets import ImageDataset
from pcgraph.data.errors import DataError

__all__ = ["CIFAR10_CLASSES", "load_cifar10"]

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
_FOLDER = "cifar-10-batches-py"
_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_TEST = ("test_batch",)
_MAX_BYTES = 64 * 1024 * 1024  # a real batch is 31 MB

# what a CIFAR batch may contain: NumPy arrays (as NumPy pickles them) and nothing callable else
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),
    # protocol 5 pickles an array as _frombuffer(buffer, dtype, shape, order): frombuffer and
    # reshape, nothing else (an object dtype is refused by frombuffer itself)
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name}")


def _read_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    size = path.stat().st_size
    if size > _MAX_BYTES:
        raise DataError(f"{path}: {size:,} bytes, far more than a CIFAR-10 batch (31 MB)")
    try:
        with path.open("rb") as f:
            batch = _SafeUnpickler(f, encoding="bytes").load()
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        ImportError,
    ) as exc:
        raise DataError(
            f"{path}: not a CIFAR-10 python batch ({exc}); unpack cifar-10-python.tar.gz again"
        ) from None
    if not isinstance(batch, dict):
        raise DataError(f"{path}: not a CIFAR-10 python batch (a {type(batch).__name__})")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        raise DataError(f"{path}: a CIFAR-10 batch needs 'data' and 'labels' entries")
    try:
        raw = bytearray(memoryview(data).cast("B"))  # a NumPy uint8 array or bytes
        images = (
            torch.frombuffer(raw, dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
        )
    except TypeError:
        raise DataError(f"{path}: 'data' is not an array of bytes") from None
    if isinstance(labels, str | bytes) or not hasattr(labels, "__len__"):
        raise DataError(f"{path}: 'labels' is a {type(labels).__name__}; expected a list of ints")
    n = len(labels)
    if images.numel() != n * 3072:
        raise DataError(
            f"{path}: {images.numel()} bytes of image data for {n} labels; expected {n} × 3072"
        )
    for i, label in enumerate(labels):
        if isinstance(label, bool) or not isinstance(label, numbers.Integral):
            raise DataError(
                f"{path}: label {i} is {label!r} ({type(label).__name__}), not a class index; "
                "CIFAR-10 labels are ints 0 … 9 — unpack cifar-10-python.tar.gz again"
            )
    y = torch.as_tensor([int(label) for label in labels], dtype=torch.int64)
    if n and (int(y.min()) < 0 or int(y.max()) > 9):
        i = int(((y < 0) | (y > 9)).nonzero()[0])
        raise DataError(f"{path}: label {int(y[i])} (sample {i}) is outside the classes 0 … 9")
    return images.view(n, 3, 32, 32), y


def _folder(root: str | os.PathLike[str]) -> Path:
    root = Path(root)
    for candidate in (root, root / _FOLDER):
        if (candidate / _TEST[0]).is_file() or (candidate / _TRAIN[0]).is_file():
            return candidate
    raise DataError(
        f"no CIFAR-10 batches under {root} (looked for {_FOLDER}/data_batch_1 and test_batch); "
        "download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and "
        "unpack it there (pcgraph does not download it)"
    )


def load_cifar10(root: str | os.PathLike[str], split: str = "train") -> ImageDataset:
    """CIFAR-10 ``split`` (``train``: the 5 training batches; ``test``) from ``root``.

    Returns:
        an :class:`ImageDataset` with float32 images [N, 3, 32, 32] in [0, 1] and int64 labels.

    Raises:
        DataError: the folder or a batch is missing, too large or not in CIFAR's format.
    """
    root = check_path(root, "load_cifar10: root")
    if split not in ("train", "test"):
        raise DataError(f"split {split!r} is not one of: train, test")
    folder = _folder(root)
    names = _TRAIN if split == "train" else _TEST
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DataError(f"{folder}: missing CIFAR-10 batch file(s) {', '.join(missing)}")
    parts = [_read_batch(folder / n) for n in names]
    images = torch.cat([p[0] for p in parts]).to(torch.float32).div_(255.0)
    labels = torch.cat([p[1] for p in parts])
    return ImageDataset(
        images=images, labels=labels, name="cifar10", split=split, source=str(folder)
    )
