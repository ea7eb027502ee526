"""Datasets and batching for pcgraph: MNIST-family loaders, IDX I/O, stream-aligned batches."""

from pcgraph.data.datasets import ImageDataset
from pcgraph.data.errors import DataError
from pcgraph.data.idx import read_idx, write_idx
from pcgraph.data.loader import embedded_dataset, load_dataset
from pcgraph.data.sampling import shuffled_batches, stream_aligned_batches, stream_aligned_labels

__all__ = [
    "DataError",
    "ImageDataset",
    "embedded_dataset",
    "load_dataset",
    "read_idx",
    "shuffled_batches",
    "stream_aligned_batches",
    "stream_aligned_labels",
    "write_idx",
]
