"""Training loops: the Trainer, its callbacks and history, and checkpoints."""

from __future__ import annotations

from pcgraph.train.callbacks import Callback, EpochRecorder, PrintCallback
from pcgraph.train.checkpoint import load_checkpoint, save_checkpoint
from pcgraph.train.history import History
from pcgraph.train.loggers import CSVLogger, JSONLinesLogger, TensorBoardLogger
from pcgraph.train.trainer import Trainer

__all__ = [
    "CSVLogger",
    "Callback",
    "EpochRecorder",
    "History",
    "JSONLinesLogger",
    "PrintCallback",
    "TensorBoardLogger",
    "Trainer",
    "load_checkpoint",
    "save_checkpoint",
]
