"""A generic trainer: epochs of PC weight updates, evaluation, callbacks, history, checkpoints."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from pcgraph.data import DataError, ImageDataset, shuffled_batches, stream_aligned_batches
from pcgraph.data.adapt import as_image_dataset
from pcgraph.engine import PCLearner
from pcgraph.errors import CheckpointError, ClampError, ConfigError, SpecError
from pcgraph.init import AverageInit
from pcgraph.schema.io import spec_to_yaml
from pcgraph.train.callbacks import Callback
from pcgraph.train.checkpoint import load_checkpoint, save_checkpoint
from pcgraph.train.history import History

__all__ = ["Trainer"]

Task = Literal["auto", "classification", "generation"]


class Trainer:
    """Train a :class:`PCLearner` on a dataset, evaluating after every epoch.

    Args:
        learner: the network with its initializer and optimizers.
        train, test: an :class:`ImageDataset` (the in-memory fast path), any map-style torch
            ``Dataset`` of (input, class) pairs or an ``(inputs, labels)`` pair of tensors (read
            once into memory), or a ``DataLoader`` (``train``: iterated as it is, its sampler,
            batch size and transforms included; samplers with ``set_epoch`` are told the
            epoch). ``test`` may be None: no evaluation.
        task: ``classification`` (inputs → labels; test accuracy from a forward sweep or
            inference), ``generation`` (only the image is observed; test reconstruction MSE), or
            ``auto`` (classification when the graph has input nodes).
        batch_size, epochs: the loop.
        stream_aligned: stream-aligned batches (n/C per class); default: on for average/hybrid.
        eval_T: inference steps for evaluation where a forward sweep is impossible (default T).
        seed: fixes the batch order of every epoch (epoch k uses seed·1000 + k).
        callbacks: hooks, see :class:`Callback`.
        progress: show a progress bar.
        checkpoint: path written (atomically) after every epoch; ``load`` restores it.

    In a data-parallel job (``learner.dist`` set, e.g. under torchrun) every rank walks the same
    global batches and trains on its contiguous shard of each; metrics are reduced over ranks,
    and only rank 0 shows progress and writes checkpoints.
    """

    def __init__(
        self,
        learner: PCLearner,
        train: ImageDataset | Dataset[Any] | DataLoader[Any] | tuple[torch.Tensor, torch.Tensor],
        test: ImageDataset | Dataset[Any] | DataLoader[Any] | None = None,
        *,
        task: Task = "auto",
        batch_size: int = 64,
        epochs: int = 1,
        stream_aligned: bool | None = None,
        eval_T: int | None = None,
        seed: int = 0,
        callbacks: Sequence[Callback] = (),
        progress: bool = True,
        checkpoint: str | os.PathLike[str] | None = None,
    ) -> None:
        self.learner, self.net = learner, learner.net
        spec = self.net.spec
        if task == "auto":
            task = "classification" if spec.names_with_role("input") else "generation"
        if task not in ("classification", "generation"):
            raise ConfigError(f"task {task!r} is not one of: auto, classification, generation")
        self.task = task
        self.inputs = spec.names_with_role("input")
        self.outputs = spec.names_with_role("output")
        if task == "classification" and (not self.inputs or not self.outputs):
            raise SpecError(
                f"classification needs input and output nodes; graph {spec.name!r} "
                f"has inputs {self.inputs} and outputs {self.outputs}"
            )
        if task == "generation" and not self.outputs:
            raise SpecError(
                f"generation needs output (observed) nodes; graph {spec.name!r} has none"
            )
        # the classes are the output node's values (the labels' one-hot width)
        self.num_classes = self.net.node(self.outputs[0]).size if task == "classification" else 1
        # a user's DataLoader is iterated as it is (its sampler, batch size, transforms,
        # workers) and never read ahead; any other data is read once into memory, the fast path
        self.loader: DataLoader[Any] | None = train if isinstance(train, DataLoader) else None
        self.train_set: ImageDataset | None = None
        if self.loader is not None:
            if self.loader.batch_size is not None:
                batch_size = self.loader.batch_size
        else:
            self.train_set = as_image_dataset(train, split="train")
            self._check_shapes(self.train_set)
        if isinstance(test, DataLoader):
            test = test.dataset  # evaluation reads every test item once anyway
        self.test_set = (
            None
            if test is None
            else as_image_dataset(test, split="test", num_classes=self.num_classes)
        )
        for name, value, low in (("batch_size", batch_size, 1), ("epochs", epochs, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name} must be a whole number ≥ {low}, got {value!r}")
        if self.train_set is not None and batch_size > len(self.train_set):
            raise ConfigError(
                f"batch_size {batch_size} is larger than the {len(self.train_set)} training "
                "samples: no full batch would run; use a batch size ≤ the data (or more data)"
            )
        self.batch_size, self.epochs, self.seed = batch_size, epochs, seed
        self.stream_aligned = (
            isinstance(learner.initializer, AverageInit)
            if stream_aligned is None
            else stream_aligned
        )
        self.eval_T = eval_T
        self.callbacks = list(callbacks)
        self.progress = progress
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.history = History()
        self.epoch = 0
        self.stop = False
        self.dist = learner.dist
        self.is_main = self.dist is None or self.dist.is_main

    # --- data ------------------------------------------------------------------------------
    def _check_shapes(self, data: ImageDataset) -> None:
        numel = math.prod(data.images.shape[1:])
        nodes = self.inputs if self.task == "classification" else self.outputs
        total = sum(self.net.node(n).size for n in nodes)
        if total != numel:
            shapes = {n: list(self.net.node(n).shape) for n in nodes}
            raise ClampError(
                f"the data's images have {numel} values but the graph's "
                f"{'input' if self.task == 'classification' else 'observed'} "
                f"node(s) {shapes} hold {total}; use a topology made for this data"
            )
        if self.task == "classification":
            size = self.net.node(self.outputs[0]).size
            if size != data.num_classes:
                raise ClampError(
                    f"output node {self.outputs[0]!r} has {size} values but the "
                    f"data has {data.num_classes} classes"
                )

    def _split(self, images: torch.Tensor, nodes: list[str]) -> dict[str, torch.Tensor]:
        flat = images.reshape(images.shape[0], -1)
        out, start = {}, 0
        for name in nodes:
            node = self.net.node(name)
            out[name] = flat[:, start : start + node.size].reshape(images.shape[0], *node.shape)
            start += node.size
        return out

    def batch_data(self, data: ImageDataset, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """The clamped tensors of one batch, on the network's device."""
        return self.tensor_batch(data.images[idx], data.labels[idx], data.num_classes)

    def tensor_batch(
        self, images: torch.Tensor, labels: torch.Tensor, num_classes: int
    ) -> dict[str, torch.Tensor]:
        """The clamped tensors of a batch of ``images`` [B, …] and class ``labels`` [B]."""
        images = images.to(self.net.device, self.net.dtype)
        if self.task == "generation":
            return self._split(images, self.outputs)
        batch = self._split(images, self.inputs)
        batch[self.outputs[0]] = torch.nn.functional.one_hot(
            torch.as_tensor(labels, dtype=torch.int64), num_classes
        ).to(self.net.device, self.net.dtype)
        return batch

    def _epoch_data(self, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        """The clamped tensors of every training batch of ``epoch`` (this rank's share)."""
        if self.loader is None:
            assert self.train_set is not None
            for idx in self.epoch_batches(epoch):
                local = idx if self.dist is None else self.dist.shard(idx)
                yield self.batch_data(self.train_set, local)
            return
        for sampler in (self.loader.batch_sampler, self.loader.sampler):
            set_epoch = getattr(sampler, "set_epoch", None)
            if set_epoch is not None:  # DistributedSampler, StreamAlignedSampler
                set_epoch(epoch)
        for item in self.loader:
            if not isinstance(item, tuple | list) or len(item) < 2:
                raise DataError(
                    f"the DataLoader yields {type(item).__name__}; expected (inputs, labels) "
                    "batches"
                )
            yield self.tensor_batch(item[0], item[1], self.num_classes)

    def _batches_per_epoch(self, epoch: int) -> int:
        return len(self.loader) if self.loader is not None else len(self.epoch_batches(epoch))

    def epoch_batches(self, epoch: int) -> list[torch.Tensor]:
        """The index batches of ``epoch`` (deterministic in seed and epoch)."""
        if self.train_set is None:
            raise ConfigError("epoch_batches: this Trainer iterates a DataLoader, not indices")
        gen = torch.Generator().manual_seed(self.seed * 1000 + epoch)
        if self.stream_aligned:
            return stream_aligned_batches(
                self.train_set.labels,
                self.batch_size,
                generator=gen,
                num_classes=self.train_set.num_classes,
            )
        return shuffled_batches(len(self.train_set), self.batch_size, generator=gen, drop_last=True)

    # --- loop ------------------------------------------------------------------------------
    def fit(self, epochs: int | None = None) -> History:
        """Train until ``epochs`` (default: the constructor's) epochs are done; returns history."""
        target = self.epochs if epochs is None else epochs
        for cb in self.callbacks:
            cb.on_train_start(self)
        total = sum(self._batches_per_epoch(e) for e in range(self.epoch, target))
        bar = tqdm(
            total=total, desc="training", disable=not (self.progress and self.is_main), leave=False
        )
        try:
            while self.epoch < target and not self.stop:
                self._run_epoch(bar)
        finally:
            bar.close()
        for cb in self.callbacks:
            cb.on_train_end(self)
        return self.history

    def _run_epoch(self, bar: Any) -> None:
        epoch = self.epoch
        for cb in self.callbacks:
            cb.on_epoch_start(self, epoch)
        energies, samples = [], 0
        for batch in self._epoch_data(epoch):
            metrics = self.learner.train_step(batch)
            energies.append(metrics.energy_after)
            samples += next(iter(batch.values())).shape[0]
            for cb in self.callbacks:
                cb.on_batch_end(self, self.learner.steps, metrics)
            bar.update(1)
        logs: dict[str, Any] = {"epoch": epoch + 1}
        if energies:
            total_energy = torch.stack(energies).sum()
            if self.dist is not None:
                self.dist.all_reduce_(total_energy)
            count = torch.tensor(float(samples), dtype=torch.float64)
            if self.dist is not None:
                count = count.to(self.dist.device)
                self.dist.all_reduce_(count)
            logs["energy"] = float(total_energy) / float(count)
        logs["smm_total"] = self.learner.smm_total
        if self.test_set is not None:
            logs.update(self.evaluate())
        self.history.append(**logs)
        self.epoch += 1
        bar.set_postfix({k: round(v, 4) for k, v in logs.items() if isinstance(v, float)})
        for cb in self.callbacks:
            cb.on_epoch_end(self, epoch, logs)
        if self.checkpoint is not None:
            if self.is_main:
                self.save(self.checkpoint)
            if self.dist is not None:
                self.dist.barrier()

    def evaluate(
        self, data: ImageDataset | None = None, *, T: int | None = None
    ) -> dict[str, float]:
        """Test accuracy (classification) or reconstruction MSE (generation) on ``data``."""
        data = data or self.test_set
        if data is None:
            raise ClampError("no test data to evaluate on; pass test= to the Trainer")
        T = T if T is not None else (self.eval_T if self.eval_T is not None else self.learner.T)
        n = len(data)
        correct, sq, count = 0, 0.0, 0
        with torch.no_grad():
            for start in range(0, n, self.batch_size):
                idx = torch.arange(start, min(start + self.batch_size, n))
                if self.dist is not None:  # every sample once, split as evenly as possible
                    idx = idx.tensor_split(self.dist.world_size)[self.dist.rank]
                    if not len(idx):
                        continue
                batch = self.batch_data(data, idx)
                if self.task == "classification":
                    inputs = {k: v for k, v in batch.items() if k in self.inputs}
                    out = self.learner.predict(inputs, T=T)[self.outputs[0]]
                    correct += int((out.argmax(-1).cpu() == data.labels[idx]).sum())
                    count += len(idx)
                else:
                    recon = self.learner.reconstruct(batch, T=T)
                    for name, value in recon.items():
                        sq += float(((value - batch[name]) ** 2).sum())
                        count += value.numel()
        if self.dist is not None:
            totals = torch.tensor(
                [float(correct), sq, float(count)], dtype=torch.float64, device=self.dist.device
            )
            self.dist.all_reduce_(totals)
            correct, sq, count = int(totals[0]), float(totals[1]), int(totals[2])
        if self.task == "classification":
            return {"test_accuracy": correct / max(count, 1)}
        return {"test_mse": sq / max(count, 1)}

    # --- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly: parameters, optimizer, initializer, counters."""
        gen = self.learner.generator
        return {
            "spec_yaml": spec_to_yaml(self.net.spec),
            "model": self.net.state_dict(),
            "optimizer": self.learner.optimizer.state_dict(),
            "initializer": {
                "name": self.learner.initializer.name,
                "state": self.learner.initializer.state_dict(),
            },
            "learner": {
                "smm_total": self.learner.smm_total,
                "steps": self.learner.steps,
                "T": self.learner.T,
            },
            "generator": gen.get_state() if gen is not None else None,
            "history": self.history.to_dict(),
            "epoch": self.epoch,
            "task": self.task,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a checkpoint atomically."""
        return save_checkpoint(path, self.state_dict())

    def _check_initializer(self, path: str | os.PathLike[str], saved: dict[str, Any]) -> None:
        """A checkpoint's learned initializer state (memories, class means, last states) goes
        only into an initializer that reads it: the same one, or ``auto`` and ``memory``, which
        share their memories. Anything else would drop it silently."""
        name, ours = saved.get("name"), self.learner.initializer.name
        shared = {name, ours} <= {"auto", "memory"}
        if name != ours and not shared and _holds_tensors(saved.get("state")):
            raise CheckpointError(
                f"{path}: it was trained with init {name!r}, whose learned state this learner's "
                f"init {ours!r} cannot use (it would be dropped, and evaluation would start from "
                f"another initialization); build the PCLearner with init={name!r}"
            )

    def load(self, path: str | os.PathLike[str]) -> None:
        """Restore from a checkpoint written for the same graph (else CheckpointError)."""
        data = load_checkpoint(path, spec=self.net.spec)
        self._check_initializer(path, data["initializer"])
        parts = (
            ("parameters", lambda: self.net.load_state_dict(data["model"])),
            ("optimizer state", lambda: self.learner.optimizer.load_state_dict(data["optimizer"])),
            (
                "initializer state",
                lambda: self.learner.initializer.load_state_dict(data["initializer"]["state"]),
            ),
        )
        for what, restore in parts:
            try:
                restore()
            except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise CheckpointError(
                    f"{path}: its {what} do not fit this network ({first}); it was written for "
                    "other shapes or options — retrain or load it with its own spec"
                ) from None
        self.learner.smm_total = int(data["learner"]["smm_total"])
        self.learner.steps = int(data["learner"]["steps"])
        if data.get("generator") is not None and self.learner.generator is not None:
            self.learner.generator.set_state(data["generator"])
        self.history = History(data["history"])
        self.epoch = int(data["epoch"])


def _holds_tensors(state: object) -> bool:
    """Whether a (nested) state holds any tensor: something was learned (an ``auto`` init that
    never used its memory holds none)."""
    if isinstance(state, torch.Tensor):
        return True
    if isinstance(state, dict):
        return any(_holds_tensors(v) for v in state.values())
    if isinstance(state, list | tuple):
        return any(_holds_tensors(v) for v in state)
    return False
