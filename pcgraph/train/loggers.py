"""Logging callbacks that other tools read: CSV and JSON lines (no extra dependency) and
TensorBoard (through ``torch.utils.tensorboard``; ``pip install "pcgraph[tensorboard]"``).

Each logs, per weight update (``every`` updates): the energy after inference, the energy per
node, the SMMs of the update and in total, and the wall time since training started; and per
epoch: the epoch's row of the history (mean energy, test accuracy or MSE, SMMs) and its wall
time. Energies are batch sums, as everywhere in pcgraph.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from pcgraph.data.checks import check_path, check_whole
from pcgraph.errors import ConfigError
from pcgraph.train.callbacks import Callback

if TYPE_CHECKING:
    from pcgraph.engine import StepMetrics
    from pcgraph.train.trainer import Trainer

__all__ = ["CSVLogger", "JSONLinesLogger", "TensorBoardLogger", "step_record"]


def step_record(trainer: Trainer, step: int, metrics: StepMetrics, start: float) -> dict[str, Any]:
    """The flat record of one weight update (floats; one ``energy/<node>`` per node)."""
    record: dict[str, Any] = {
        "step": step,
        "epoch": trainer.epoch + 1,
        "energy": float(metrics.energy_after),
        "energy_before": float(metrics.energy_before),
        "smm": int(metrics.smm),
        "smm_total": int(metrics.smm_total),
        "wall_s": time.perf_counter() - start,
    }
    names = [n.name for n in trainer.net.nodes]
    for name, value in zip(names, metrics.node_energies.tolist(), strict=True):
        record[f"energy/{name}"] = value
    return record


class _FileLogger(Callback):
    """Shared by the CSV and JSON-lines loggers: one file of steps, one of epochs."""

    suffix = ""

    def __init__(self, log_dir: str | Path, *, every: int = 1) -> None:
        self.log_dir = check_path(log_dir, f"{type(self).__name__}: log_dir", error=ConfigError)
        self.every = check_whole(every, "every", low=1, error=ConfigError)
        self._files: dict[str, TextIO] = {}
        self._start = time.perf_counter()

    def _open(self, kind: str) -> TextIO:
        f = self._files.get(kind)
        if f is None:
            path = self.log_dir / f"{kind}{self.suffix}"
            try:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                f = path.open("w", encoding="utf-8", newline="")
            except OSError as exc:
                raise ConfigError(
                    f"{type(self).__name__}: cannot write {path} ({exc.strerror or exc}); "
                    f"make the folder {self.log_dir} writable or log to another one"
                ) from None
            self._files[kind] = f
        return f

    def _write(self, kind: str, record: dict[str, Any]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def on_train_start(self, trainer: Trainer) -> None:
        self._start = time.perf_counter()

    def on_batch_end(self, trainer: Trainer, step: int, metrics: StepMetrics) -> None:
        if trainer.is_main and step % self.every == 0:
            self._write("steps", step_record(trainer, step, metrics, self._start))

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        if trainer.is_main:
            self._write("epochs", {**logs, "wall_s": time.perf_counter() - self._start})

    def on_train_end(self, trainer: Trainer) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()


class JSONLinesLogger(_FileLogger):
    """``LOG_DIR/steps.jsonl`` and ``LOG_DIR/epochs.jsonl``: one JSON object per line."""

    suffix = ".jsonl"

    def _write(self, kind: str, record: dict[str, Any]) -> None:
        f = self._open(kind)
        f.write(json.dumps(record) + "\n")
        f.flush()


class CSVLogger(_FileLogger):
    """``LOG_DIR/steps.csv`` and ``LOG_DIR/epochs.csv``, with a header row (the columns of the
    first record; later records have the same keys)."""

    suffix = ".csv"

    def __init__(self, log_dir: str | Path, *, every: int = 1) -> None:
        super().__init__(log_dir, every=every)
        self._writers: dict[str, csv.DictWriter[str]] = {}

    def _write(self, kind: str, record: dict[str, Any]) -> None:
        writer = self._writers.get(kind)
        f = self._open(kind)
        if writer is None:
            writer = csv.DictWriter(f, fieldnames=list(record), extrasaction="ignore")
            writer.writeheader()
            self._writers[kind] = writer
        writer.writerow(record)
        f.flush()

    def on_train_end(self, trainer: Trainer) -> None:
        super().on_train_end(trainer)
        self._writers.clear()


class TensorBoardLogger(Callback):
    """TensorBoard scalars under ``LOG_DIR``: ``train/energy``, ``train/energy/<node>``,
    ``train/smm_total`` and ``train/wall_s`` per update, and every epoch's history row
    (``epoch/test_accuracy``, ``epoch/energy``, …) at the epoch number.

    Raises:
        ConfigError: when the ``tensorboard`` package is not installed (with the install line).
    """

    def __init__(self, log_dir: str | Path, *, every: int = 1) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(
                "TensorBoard logging needs the tensorboard package: "
                'pip install "pcgraph[tensorboard]" (CSV and JSON-lines logging need nothing)'
            ) from None
        self.log_dir = check_path(log_dir, "TensorBoardLogger: log_dir", error=ConfigError)
        self.every = check_whole(every, "every", low=1, error=ConfigError)
        self._writer_cls = SummaryWriter
        self._writer: Any = None
        self._start = time.perf_counter()

    def on_train_start(self, trainer: Trainer) -> None:
        self._start = time.perf_counter()
        if trainer.is_main and self._writer is None:
            self._writer = self._writer_cls(log_dir=str(self.log_dir))

    def on_batch_end(self, trainer: Trainer, step: int, metrics: StepMetrics) -> None:
        if self._writer is None or step % self.every:
            return
        for key, value in step_record(trainer, step, metrics, self._start).items():
            if key not in ("step", "epoch"):
                self._writer.add_scalar(f"train/{key}", value, step)

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        if self._writer is None:
            return
        for key, value in logs.items():
            if key != "epoch" and isinstance(value, int | float):
                self._writer.add_scalar(f"epoch/{key}", value, epoch + 1)
        self._writer.add_scalar("epoch/wall_s", time.perf_counter() - self._start, epoch + 1)
        self._writer.flush()

    def on_train_end(self, trainer: Trainer) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
