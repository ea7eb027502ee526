"""Trainer callbacks: hooks that stay out of the hot loop (logging, plotting, early stops)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pcgraph.engine import PCLearner, StepMetrics
    from pcgraph.train.trainer import Trainer

__all__ = ["Callback", "EpochRecorder", "PrintCallback"]


class Callback:
    """Override any hook; each receives the trainer. Set ``trainer.stop = True`` to stop."""

    def on_train_start(self, trainer: Trainer) -> None:
        """Before the first epoch."""

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Before each epoch (0-based)."""

    def on_batch_end(self, trainer: Trainer, step: int, metrics: StepMetrics) -> None:
        """After each weight update (metrics' tensors are still on the device)."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        """After each epoch's evaluation; ``logs`` is the row added to the history."""

    def on_train_end(self, trainer: Trainer) -> None:
        """After the last epoch."""


class PrintCallback(Callback):
    """Print one line per epoch."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        if not trainer.is_main:
            return
        shown = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in logs.items()
        )
        print(f"epoch {epoch + 1}: {shown}")


class EpochRecorder(Callback):
    """Record per epoch what a comparison of runs reports, with evaluation kept off the clock.

    ``record`` holds lists with one entry per epoch:

    - ``train_seconds``: cumulative wall time of the weight updates (the device is synchronized
      at the start and end of each epoch; the trainer's own evaluation, if it has a test set,
      is included, so pass ``test=None`` and an ``evaluate`` function instead);
    - ``smm_total``: the learner's cumulative sequential matmuls;
    - ``energy_before`` / ``energy_after``: the mean over the epoch's updates of the energy at
      the initialization and after inference, per sample;
    - one list per key that ``evaluate(learner)`` returns, called after the clock stops;

    and ``smm_per_step``: the SMMs of the first three updates. ``last_metrics`` holds the last
    update's metrics. ``on_batch`` is called with each update's metrics (a progress bar, say).
    """

    def __init__(
        self,
        evaluate: Callable[[PCLearner], Mapping[str, float]] | None = None,
        *,
        on_batch: Callable[[StepMetrics], None] | None = None,
    ) -> None:
        self.evaluate = evaluate
        self.on_batch = on_batch
        self.record: dict[str, Any] = {
            "train_seconds": [],
            "smm_total": [],
            "energy_before": [],
            "energy_after": [],
            "smm_per_step": [],
        }
        self._seconds = 0.0
        self._start = 0.0
        self._before: list[Any] = []
        self._after: list[Any] = []
        self.last_metrics: StepMetrics | None = None

    @staticmethod
    def _sync(trainer: Trainer) -> None:
        device = trainer.net.device
        if device.type == "cuda":
            import torch

            torch.cuda.synchronize(device)

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        self._before, self._after = [], []
        self._sync(trainer)
        self._start = time.perf_counter()

    def on_batch_end(self, trainer: Trainer, step: int, metrics: StepMetrics) -> None:
        self._before.append(metrics.energy_before)
        self._after.append(metrics.energy_after)
        self.last_metrics = metrics
        if len(self.record["smm_per_step"]) < 3:
            self.record["smm_per_step"].append(metrics.smm)
        if self.on_batch is not None:
            self.on_batch(metrics)

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        import torch

        self._sync(trainer)
        self._seconds += time.perf_counter() - self._start
        rec = self.record
        rec["train_seconds"].append(self._seconds)
        rec["smm_total"].append(trainer.learner.smm_total)
        per_sample = float(trainer.batch_size)
        for key, values in (("energy_before", self._before), ("energy_after", self._after)):
            mean = float(torch.stack(values).mean()) if values else float("nan")
            rec[key].append(mean / per_sample)
        if self.evaluate is not None:
            for key, value in self.evaluate(trainer.learner).items():
                rec.setdefault(key, []).append(value)
