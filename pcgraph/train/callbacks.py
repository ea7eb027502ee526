"""Trainer callbacks: hooks that stay out of the hot loop (logging, plotting, early stops)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pcgraph.engine import StepMetrics
    from pcgraph.train.trainer import Trainer

__all__ = ["Callback", "PrintCallback"]


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
