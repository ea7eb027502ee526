"""In-memory image classification datasets (Fashion-MNIST, MNIST, KMNIST)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pcgraph.data.errors import DataError

__all__ = ["ImageDataset"]


@dataclass(frozen=True)
class ImageDataset:
    """A labelled image dataset held in memory.

    Attributes:
        images: float32 ``[N, C, H, W]`` with values in ``[0, 1]`` (``[N, 1, 28, 28]`` for
            the MNIST family, ``[N, 3, 32, 32]`` for CIFAR-10).
        labels: int64 ``[N]`` with values in ``[0, num_classes)``.
        name: ``"fashion-mnist"``, ``"mnist"``, ``"kmnist"``, ``"cifar10"`` or the user's.
        split: ``"train"`` or ``"test"``.
        source: Where the data came from (a folder, or ``"embedded subset"``).
        num_classes: Number of classes.
    """

    images: torch.Tensor
    labels: torch.Tensor
    name: str
    split: str
    source: str
    num_classes: int = 10

    def __post_init__(self) -> None:
        """Check that images and labels agree in shape and type."""
        if self.images.ndim != 4:
            raise DataError(
                f"ImageDataset.images: expected shape [N, C, H, W], got {list(self.images.shape)}"
            )
        if self.labels.ndim != 1 or self.labels.shape[0] != self.images.shape[0]:
            raise DataError(
                f"ImageDataset.labels: expected shape [{self.images.shape[0]}], "
                f"got {list(self.labels.shape)}"
            )
        if self.labels.dtype != torch.int64:
            raise DataError(f"ImageDataset.labels: expected int64, got {self.labels.dtype}")

    def __len__(self) -> int:
        """Return the number of samples."""
        return int(self.labels.shape[0])

    def __repr__(self) -> str:
        """Return a short summary (no tensor contents)."""
        return (
            f"ImageDataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"num_classes={self.num_classes}, source={self.source!r})"
        )

    def class_counts(self) -> torch.Tensor:
        """Return the number of samples of each class, int64 ``[num_classes]``."""
        return torch.bincount(self.labels, minlength=self.num_classes)

    def select(self, indices: torch.Tensor) -> ImageDataset:
        """Return the samples at ``indices`` (a copy), keeping name, split and source.

        Args:
            indices: int64 index tensor.

        Returns:
            The selected dataset.
        """
        return ImageDataset(
            images=self.images[indices],
            labels=self.labels[indices],
            name=self.name,
            split=self.split,
            source=self.source,
            num_classes=self.num_classes,
        )

    def subset(
        self, n: int, *, generator: torch.Generator | None = None, balanced: bool = True
    ) -> ImageDataset:
        """Return ``n`` samples, in their original order.

        Without a generator the first matching samples are taken; with one, a random choice.
        When ``balanced``, each class gets ``n // num_classes`` samples and the remainder goes
        one each to the lowest-numbered classes.

        Args:
            n: Number of samples, ``0 <= n <= len(self)``.
            generator: Source of randomness; None takes the first samples.
            balanced: Take equally many samples of every class.

        Returns:
            The subset.

        Raises:
            DataError: ``n`` is out of range, or a class has too few samples to balance.
        """
        if not 0 <= n <= len(self):
            raise DataError(f"subset: n={n} is outside [0, {len(self)}] for {self!r}")
        order = (
            torch.arange(len(self))
            if generator is None
            else torch.randperm(len(self), generator=generator)
        )
        if not balanced:
            return self.select(torch.sort(order[:n]).values)
        per_class, extra = divmod(n, self.num_classes)
        ordered_labels = self.labels[order]
        chosen: list[torch.Tensor] = []
        for c in range(self.num_classes):
            want = per_class + (1 if c < extra else 0)
            members = order[ordered_labels == c]
            if members.numel() < want:
                raise DataError(
                    f"subset: class {c} has {members.numel()} samples but a balanced subset "
                    f"of {n} needs {want}; pass balanced=False or a smaller n"
                )
            chosen.append(members[:want])
        return self.select(torch.sort(torch.cat(chosen)).values)

    def flat(self) -> torch.Tensor:
        """Return the images flattened to ``[N, H*W]`` (784 for 28x28)."""
        return self.images.reshape(len(self), -1)

    def one_hot(self) -> torch.Tensor:
        """Return the labels one-hot encoded, float32 ``[N, num_classes]``."""
        return torch.nn.functional.one_hot(self.labels, self.num_classes).to(torch.float32)

    def to(self, device: torch.device | str) -> ImageDataset:
        """Return a copy with both tensors moved to ``device``.

        Args:
            device: Target device.

        Returns:
            The moved dataset.
        """
        return ImageDataset(
            images=self.images.to(device),
            labels=self.labels.to(device),
            name=self.name,
            split=self.split,
            source=self.source,
            num_classes=self.num_classes,
        )
