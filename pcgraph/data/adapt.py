"""PyTorch data in, pcgraph batches out: any map-style ``Dataset``, ``(inputs, labels)`` tensors,
and a batch sampler for stream-aligned batches that a user's own ``DataLoader`` can use.

- :func:`as_image_dataset` turns a ``torch.utils.data.Dataset`` of (input, target) pairs
  (torchvision datasets with a ``ToTensor`` transform, ``TensorDataset``, a user's class) or a
  pair of tensors into the in-memory :class:`ImageDataset` that :class:`pcgraph.train.Trainer`
  batches from (each item is read once; transforms run then).
- :class:`StreamAlignedSampler` yields the index batches of :func:`stream_aligned_batches`
  (n/C samples of each class per batch, in the fixed class layout that average and hybrid
  initialization need), reshuffled per epoch like ``DistributedSampler`` (``set_epoch``), and,
  in a data-parallel job, each rank's contiguous shard of every global batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, IterableDataset, Sampler

from pcgraph.data.checks import as_float_images, check_labels, check_whole, data_name
from pcgraph.data.datasets import ImageDataset
from pcgraph.data.errors import DataError
from pcgraph.data.sampling import stream_aligned_batches

__all__ = ["StreamAlignedSampler", "as_image_dataset"]


def _as_label(target: Any, i: int, where: str) -> int:
    if isinstance(target, torch.Tensor):
        if target.numel() != 1:
            raise DataError(
                f"{where}: item {i}: the target has shape {list(target.shape)}; expected a class "
                "index (an int or a 0-d tensor)"
            )
        target = target.item()
    if isinstance(target, bool) or not isinstance(target, int):
        raise DataError(
            f"{where}: item {i}: the target {target!r} is not a class index (an int); a float "
            "label is never truncated to a class"
        )
    return int(target)


def as_image_dataset(
    data: Any,
    *,
    num_classes: int | None = None,
    name: str = "data",
    split: str = "train",
) -> ImageDataset:
    """An :class:`ImageDataset` holding ``data``'s samples in memory.

    Args:
        data: an ImageDataset (returned as is), a pair ``(inputs, labels)`` of tensors
            ([N, …] and [N] class indices), or a map-style Dataset whose items are
            ``(input tensor, class index)`` pairs. Inputs of shape [N, F] or [N, H, W] get a
            channel axis ([N, 1, F, 1] or [N, 1, H, W]); the Trainer flattens them onto the
            input nodes anyway. uint8 inputs (0 … 255) are scaled to [0, 1] with a warning.
        num_classes: C; by default ``labels.max() + 1``.
        name, split: name the data in error messages and in the result.

    Raises:
        DataError: items that are not (tensor, class index) pairs, shapes that disagree, an
            empty dataset, complex inputs, labels that are not whole numbers in [0, C), an
            ``IterableDataset`` (no length: the Trainer streams one instead) — naming the data,
            the item and the value.
    """
    if isinstance(data, ImageDataset):
        return data
    where = data_name(name, split)
    if isinstance(data, IterableDataset):
        raise DataError(
            f"{where}: a {type(data).__name__} is an IterableDataset, which has no length and "
            "no items by index, so it cannot be read into memory (it may be endless); the "
            "Trainer streams training data from it (pass it, or a DataLoader over it, as "
            "train=); for test data pass a map-style Dataset or (inputs, labels) tensors"
        )
    if (
        isinstance(data, tuple | list)
        and len(data) == 2
        and all(isinstance(t, torch.Tensor) for t in data)
    ):
        inputs, labels = data
    elif isinstance(data, Dataset) or (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        n = len(data)
        if n == 0:
            raise DataError(
                f"{where}: the dataset is empty; it needs at least one (input, target) item"
            )
        xs: list[torch.Tensor] = []
        ys: list[int] = []
        for i in range(n):
            item = data[i]
            if not isinstance(item, tuple | list) or len(item) < 2:
                raise DataError(
                    f"{where}: item {i} is a {type(item).__name__}; expected an (input, target) "
                    "pair"
                )
            x, y = item[0], item[1]
            if not isinstance(x, torch.Tensor):
                raise DataError(
                    f"{where}: item {i}: the input is a {type(x).__name__}, not a tensor; for "
                    "images use a transform such as torchvision.transforms.ToTensor()"
                )
            if xs and x.shape != xs[0].shape:
                raise DataError(
                    f"{where}: item {i}: input shape {list(x.shape)} differs from item 0's "
                    f"{list(xs[0].shape)}"
                )
            xs.append(x)
            ys.append(_as_label(y, i, where))
        inputs, labels = torch.stack(xs), torch.tensor(ys, dtype=torch.int64)
    else:
        raise DataError(
            f"{where}: cannot use a {type(data).__name__} as data; pass a torch Dataset of (input, "
            "class) pairs, a DataLoader, an (inputs, labels) pair of tensors or an ImageDataset"
        )
    if labels.dim() != 1 or inputs.dim() == 0 or inputs.shape[0] != labels.shape[0]:
        raise DataError(
            f"{where}: inputs of shape {list(inputs.shape)} but labels of shape "
            f"{list(labels.shape)}; pass one class index per input"
        )
    if inputs.shape[0] == 0:
        raise DataError(f"{where}: no samples (empty data); pass at least one (input, label)")
    labels = check_labels(labels, where, num_classes=num_classes)
    images = as_float_images(inputs, where)
    if images.dim() == 2:
        images = images[:, None, :, None]
    elif images.dim() == 3:
        images = images[:, None]
    elif images.dim() != 4:
        raise DataError(
            f"{where}: inputs of shape {list(inputs.shape)}; expected [N, F] or [N, C, H, W]"
        )
    classes = int(labels.max()) + 1 if num_classes is None else num_classes
    return ImageDataset(
        images=images,
        labels=labels.to(torch.int64),
        name=name,
        split=split,
        source=type(data).__name__,
        num_classes=classes,
    )


class StreamAlignedSampler(Sampler[list[int]]):
    """Stream-aligned index batches for a ``DataLoader(dataset, batch_sampler=...)``.

    Args:
        labels: the class index of every sample [N].
        batch_size: the global batch size, a multiple of the number of classes.
        num_classes: C (default ``labels.max() + 1``).
        seed: the shuffle of epoch k uses seed·1000 + k (as :class:`pcgraph.train.Trainer`).
        rank, world_size: in a data-parallel job, each rank gets its contiguous shard of every
            global batch (``batch_size / world_size`` samples), so that the ranks together see
            exactly the global batch.
    """

    def __init__(
        self,
        labels: torch.Tensor,
        batch_size: int,
        *,
        num_classes: int | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        check_whole(batch_size, "StreamAlignedSampler: batch_size", low=1)
        check_whole(world_size, "StreamAlignedSampler: world_size", low=1)
        check_whole(rank, "StreamAlignedSampler: rank", low=0)
        check_whole(seed, "StreamAlignedSampler: seed")
        if num_classes is not None:
            check_whole(num_classes, "StreamAlignedSampler: num_classes", low=1)
        if rank >= world_size:
            raise DataError(f"rank {rank} is not in 0 … {world_size - 1}")
        if batch_size % world_size:
            raise DataError(
                f"batch_size {batch_size} does not split into {world_size} equal shards"
            )
        self.labels = check_labels(labels, "StreamAlignedSampler", num_classes=num_classes)
        self.batch_size, self.num_classes = batch_size, num_classes
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0
        self._batches()  # validate now: a bad batch size or a small class fails here

    def set_epoch(self, epoch: int) -> None:
        """Use the shuffle of ``epoch`` for the next iteration."""
        self.epoch = epoch

    def _batches(self) -> list[torch.Tensor]:
        gen = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        return stream_aligned_batches(
            self.labels, self.batch_size, num_classes=self.num_classes, generator=gen
        )

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self._batches():
            yield batch.tensor_split(self.world_size)[self.rank].tolist()

    def __len__(self) -> int:
        return len(self._batches())
