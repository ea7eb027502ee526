"""Evaluation of a Trainer's network on in-memory data: accuracy or reconstruction MSE, and
the test loss (a squared error per sample)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from pcgraph.data import ImageDataset

if TYPE_CHECKING:
    from pcgraph.train.trainer import Trainer

__all__ = ["evaluate_on"]


def evaluate_on(trainer: Trainer, data: ImageDataset, T: int) -> dict[str, float]:
    """``test_accuracy`` and ``test_loss`` = mean over samples of ‖ŷ − onehot(y)‖²
    (classification: ŷ the predicted output), or ``test_mse`` (per value) and ``test_loss`` =
    mean over samples of ‖x̂ − x‖² summed over the observed nodes (generation: x̂ the
    reconstruction after T inference steps). In a data-parallel job every rank evaluates its
    share and the sums are reduced."""
    n = len(data)
    correct, sq, count, seen = 0, 0.0, 0, 0
    with torch.no_grad():
        for start in range(0, n, trainer.batch_size):
            idx = torch.arange(start, min(start + trainer.batch_size, n))
            if trainer.dist is not None:  # every sample once, split as evenly as possible
                idx = idx.tensor_split(trainer.dist.world_size)[trainer.dist.rank]
                if not len(idx):
                    continue
            batch = trainer.batch_data(data, idx)
            if trainer.task == "classification":
                inputs = {k: v for k, v in batch.items() if k in trainer.inputs}
                out = trainer.learner.predict(inputs, T=T)[trainer.outputs[0]]
                correct += int((out.argmax(-1).cpu() == data.labels[idx]).sum())
                count += len(idx)
                sq += float(((out - batch[trainer.outputs[0]]) ** 2).sum())
            else:
                recon = trainer.learner.reconstruct(batch, T=T)
                for name, value in recon.items():
                    sq += float(((value - batch[name]) ** 2).sum())
                    count += value.numel()
                seen += len(idx)
    if trainer.dist is not None:
        totals = torch.tensor(
            [float(correct), sq, float(count), float(seen)],
            dtype=torch.float64,
            device=trainer.dist.device,
        )
        trainer.dist.all_reduce_(totals)
        correct, sq, count = int(totals[0]), float(totals[1]), int(totals[2])
        seen = int(totals[3])
    if trainer.task == "classification":
        return {"test_accuracy": correct / max(count, 1), "test_loss": sq / max(count, 1)}
    return {"test_mse": sq / max(count, 1), "test_loss": sq / max(seen, 1)}
