"""Datasets and batching for pcgraph: MNIST-family and CIFAR-10 loaders, IDX I/O, torch Dataset
adapters, stream-aligned batches (also as a torch batch sampler)."""

from pcgraph.data.adapt import StreamAlignedSampler, as_image_dataset
from pcgraph.data.cifar import CIFAR10_CLASSES, load_cifar10
from pcgraph.data.datasets import ImageDataset
from pcgraph.data.errors import DataError
from pcgraph.data.idx import read_idx, write_idx
from pcgraph.data.loader import embedded_dataset, load_dataset
from pcgraph.data.sampling import shuffled_batches, stream_aligned_batches, stream_aligned_labels

__all__ = [
    "CIFAR10_CLASSES",
    "DataError",
    "ImageDataset",
    "StreamAlignedSampler",
    "as_image_dataset",
    "embedded_dataset",
    "load_cifar10",
    "load_dataset",
    "read_idx",
    "shuffled_batches",
    "stream_aligned_batches",
    "stream_aligned_labels",
    "write_idx",
]
