"""Index batches for one epoch: ordinary shuffled batches and stream-aligned batches.

Stream-aligned batches hold ``batch_size // C`` samples of every class, laid out in class
blocks in the same order in every batch (class 0 first, then class 1, ...), so position ``k``
of every batch always holds the same class (:func:`stream_aligned_labels` gives the layout).

Imbalanced classes: the number of batches is ``floor(min_count / per_class)``, limited by the
smallest class. Surplus samples of larger classes are left out of that epoch — different ones
each epoch when shuffled — and a warning reports how many when more than 10% are dropped.
"""

from __future__ import annotations

import warnings

import torch

from pcgraph.data.checks import check_labels, check_whole
from pcgraph.data.errors import DataError

__all__ = ["shuffled_batches", "stream_aligned_batches", "stream_aligned_labels"]

#: Fraction of samples dropped per epoch above which stream_aligned_batches warns.
DROP_WARN_FRACTION = 0.10


def _per_class(batch_size: int, num_classes: int) -> int:
    """Return ``batch_size // num_classes``, or raise if it does not divide evenly."""
    if num_classes < 1:
        raise DataError(f"num_classes must be at least 1, got {num_classes}")
    if batch_size < num_classes or batch_size % num_classes:
        lower = (batch_size // num_classes) * num_classes
        options = [size for size in (lower, lower + num_classes) if size > 0]
        raise DataError(
            f"batch_size={batch_size} is not a positive multiple of num_classes={num_classes}; "
            f"stream-aligned batches need the same count of every class — use batch_size "
            + " or ".join(map(str, options))
        )
    return batch_size // num_classes


def stream_aligned_labels(batch_size: int, num_classes: int) -> torch.Tensor:
    """Return the label at each position of every stream-aligned batch.

    Args:
        batch_size: Samples per batch, a multiple of ``num_classes``.
        num_classes: Number of classes C.

    Returns:
        int64 ``[batch_size]``: ``batch_size // C`` zeros, then as many ones, and so on.
    """
    per_class = _per_class(batch_size, num_classes)
    return torch.arange(num_classes, dtype=torch.int64).repeat_interleave(per_class)


def stream_aligned_batches(
    labels: torch.Tensor,
    batch_size: int,
    *,
    num_classes: int | None = None,
    generator: torch.Generator | None = None,
    shuffle: bool = True,
) -> list[torch.Tensor]:
    """Split one epoch into class-balanced batches with a fixed class layout.

    Args:
        labels: Integer class labels ``[N]`` in ``[0, C)``.
        batch_size: Samples per batch, a multiple of C.
        num_classes: C; inferred as ``labels.max() + 1`` when None.
        generator: Source of randomness for shuffling.
        shuffle: Randomise which samples of each class go to which batch; when False,
            samples keep their dataset order within each class.

    Returns:
        int64 index tensors ``[batch_size]``, each laid out as :func:`stream_aligned_labels`.
        Every index appears at most once per epoch.

    Raises:
        DataError: Bad labels, a batch size that is not a multiple of C, or a class with
            fewer than ``batch_size // C`` samples.
    """
    check_whole(batch_size, "batch_size", low=1)
    if num_classes is not None:
        check_whole(num_classes, "num_classes", low=1)
    labels = check_labels(labels, "stream_aligned_batches", num_classes=num_classes)
    if num_classes is None:
        num_classes = int(labels.max()) + 1
    per_class = _per_class(batch_size, num_classes)
    counts = torch.bincount(labels, minlength=num_classes)
    smallest = int(torch.argmin(counts))
    if int(counts[smallest]) < per_class:
        raise DataError(
            f"class {smallest} has {int(counts[smallest])} samples but batch_size={batch_size} "
            f"needs {per_class} per class; use a smaller batch_size or more data"
        )
    num_batches = int(counts[smallest]) // per_class

    n = labels.numel()
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    # Stable sort by label keeps the (shuffled) order within each class.
    by_class = order[torch.sort(labels[order], stable=True).indices]
    starts = torch.cumsum(counts, 0) - counts
    take = num_batches * per_class
    blocks = torch.stack(
        [by_class[int(s) : int(s) + take].view(num_batches, per_class) for s in starts]
    )  # [C, num_batches, per_class]
    batches = blocks.permute(1, 0, 2).reshape(num_batches, batch_size)

    dropped = n - num_batches * batch_size
    if dropped > DROP_WARN_FRACTION * n:
        warnings.warn(
            f"stream_aligned_batches: dropped {dropped} of {n} samples ({100 * dropped / n:.1f}%) "
            f"this epoch; the smallest class ({smallest}, {int(counts[smallest])} samples) "
            f"limits the epoch to {num_batches} batches of {per_class} per class",
            stacklevel=2,
        )
    return list(batches.unbind(0))


def shuffled_batches(
    n: int, batch_size: int, *, generator: torch.Generator | None = None, drop_last: bool = False
) -> list[torch.Tensor]:
    """Split ``range(n)`` into randomly ordered index batches for one epoch.

    Args:
        n: Number of samples.
        batch_size: Samples per batch.
        generator: Source of randomness.
        drop_last: Leave out the final batch when it is smaller than ``batch_size``.

    Returns:
        int64 index tensors; every index in ``range(n)`` appears at most once.
    """
    check_whole(n, "n", low=0)
    check_whole(batch_size, "batch_size", low=1)
    order = torch.randperm(n, generator=generator)
    batches = list(torch.split(order, batch_size))
    if drop_last and batches and batches[-1].numel() < batch_size:
        batches.pop()
    return batches
