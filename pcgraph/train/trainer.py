"""A generic trainer: epochs of PC weight updates, evaluation, callbacks, history, checkpoints."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset
from tqdm import tqdm

from pcgraph.data import DataError, ImageDataset, shuffled_batches, stream_aligned_batches
from pcgraph.data.adapt import as_image_dataset
from pcgraph.data.checks import check_path, check_whole, data_name
from pcgraph.engine import PCLearner
from pcgraph.errors import ClampError, ConfigError, SpecError
from pcgraph.init import AverageInit
from pcgraph.train import records
from pcgraph.train.callbacks import Callback
from pcgraph.train.evaluation import evaluate_on
from pcgraph.train.guards import (
    check_bernoulli_targets,
    check_finite_params,
    check_width,
    loader_batch,
)
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
            epoch). An ``IterableDataset`` (``train`` only; directly or in a DataLoader) is
            streamed: batches of ``batch_size`` are read as they come, each epoch anew.
            ``test`` may be None: no evaluation. uint8 images are scaled to [0, 1] with a
            warning; complex data, labels that are not whole numbers in [0, C) and data of a
            ``bernoulli`` node outside [0, 1] are refused (DataError).
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
            ``best.pt`` in the same folder keeps the epoch with the best ``monitor`` value.
        monitor: the history metric ``best.pt`` follows (higher is better for an accuracy,
            lower for anything else); default ``test_accuracy`` or ``test_mse`` with test
            data, else ``energy``.
        train_eval_size: training samples (a fixed random choice) whose accuracy is recorded
            as ``train_accuracy`` after each epoch (classification on in-memory data; 0: none).

    The history holds per epoch: ``epoch``, ``energy`` (mean per sample), ``smm_total``,
    ``wall_s`` (the epoch's seconds, evaluation included), ``train_accuracy``, and with test
    data ``test_accuracy`` and ``test_loss`` (mean squared error of the predicted output
    against the one-hot label, summed over classes) or ``test_mse`` and ``test_loss`` (the
    squared reconstruction error per sample). After every weight update the parameters are
    checked: NaN or ±inf ends the run with an EnergyError naming the parameter.

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
        monitor: str | None = None,
        train_eval_size: int = 1000,
    ) -> None:
        if not isinstance(learner, PCLearner):
            raise ConfigError(f"learner must be a PCLearner, got {type(learner).__name__}")
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
        # the nodes the images go to: the inputs (classification) or the observed outputs
        classify = task == "classification"
        self.data_nodes = self.inputs if classify else self.outputs
        self.data_role = "input" if classify else "observed"
        # the classes are the output node's values (the labels' one-hot width)
        self.num_classes = self.net.node(self.outputs[0]).size if task == "classification" else 1
        for name, value, low in (("batch_size", batch_size, 1), ("epochs", epochs, 0)):
            check_whole(value, name, low=low, error=ConfigError)
        check_whole(seed, "seed", error=ConfigError)
        check_whole(train_eval_size, "train_eval_size", low=0, error=ConfigError)
        if eval_T is not None:
            check_whole(eval_T, "eval_T", low=0, error=ConfigError)
        classes = self.num_classes if task == "classification" else None  # labels checked
        # an IterableDataset has no length: it is streamed, in batches of batch_size
        if isinstance(train, IterableDataset):
            train = DataLoader(train, batch_size=batch_size)
        # a user's DataLoader is iterated as it is (its sampler, batch size, transforms,
        # workers) and never read ahead; any other data is read once into memory, the fast path
        self.loader: DataLoader[Any] | None = train if isinstance(train, DataLoader) else None
        self.train_set: ImageDataset | None = None
        if self.loader is not None:
            if self.loader.batch_size is not None:
                batch_size = self.loader.batch_size
        else:
            self.train_set = as_image_dataset(train, split="train", num_classes=classes)
            self._check_data(self.train_set)
        if isinstance(test, DataLoader):
            test = test.dataset  # evaluation reads every test item once anyway
        self.test_set = (
            None if test is None else as_image_dataset(test, split="test", num_classes=classes)
        )
        if self.test_set is not None:
            self._check_data(self.test_set)
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
        self.checkpoint = (
            None if checkpoint is None else check_path(checkpoint, "checkpoint", error=ConfigError)
        )
        if self.checkpoint is not None:
            records.check_writable(self.checkpoint)
        self.monitor = monitor or records.default_monitor(task, self.test_set is not None)
        known = self._metrics()
        if self.monitor not in known:
            raise ConfigError(
                f"monitor {self.monitor!r} is not a metric of this run; choose one of: "
                + ", ".join(known)
            )
        self.train_probe = self._train_probe(train_eval_size)
        self._warned_uint8 = False
        self.history = History()
        self.epoch = 0
        self.stop = False
        self.dist = learner.dist
        self.is_main = self.dist is None or self.dist.is_main

    # --- data ------------------------------------------------------------------------------
    def _check_data(self, data: ImageDataset) -> None:
        """Refuse in-memory data that does not fit the graph: empty, widths that differ from
        the nodes', a class count that differs from the output's, bernoulli data outside
        [0, 1]."""
        where = data_name(data.name, data.split)
        if len(data) == 0:
            raise DataError(f"{where} is empty; pass at least one sample")
        check_width(self.net, self.data_nodes, list(data.images.shape), where, self.data_role)
        if self.task == "classification":
            size = self.net.node(self.outputs[0]).size
            if size != data.num_classes:
                raise ClampError(
                    f"{where}: output node {self.outputs[0]!r} has {size} values but the "
                    f"data has {data.num_classes} classes"
                )
        check_bernoulli_targets(self.net, self._split(data.images, self.data_nodes), where)

    def _metrics(self) -> list[str]:
        """The history keys of this run's epochs (what ``monitor`` may name)."""
        keys = ["energy", "smm_total", "wall_s"]
        if self.task == "classification":
            keys.append("train_accuracy")
        if self.test_set is not None:
            keys += ["test_accuracy" if self.task == "classification" else "test_mse", "test_loss"]
        return keys

    def _train_probe(self, size: int) -> ImageDataset | None:
        """A fixed random choice of ``size`` training samples for ``train_accuracy``."""
        if self.task != "classification" or self.train_set is None or size == 0:
            return None
        if size >= len(self.train_set):
            return self.train_set
        gen = torch.Generator().manual_seed(self.seed * 1000 + 999)
        idx = torch.randperm(len(self.train_set), generator=gen)[:size].sort().values
        return self.train_set.select(idx)

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
        self, images: torch.Tensor, labels: torch.Tensor | None, num_classes: int
    ) -> dict[str, torch.Tensor]:
        """The clamped tensors of a batch of ``images`` [B, …] and class ``labels`` [B]
        (unused in generation)."""
        images = images.to(self.net.device, self.net.dtype)
        if self.task == "generation":
            return self._split(images, self.outputs)
        batch = self._split(images, self.inputs)
        assert labels is not None
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
        count = 0
        classes = self.num_classes if self.task == "classification" else None
        for k, item in enumerate(self.loader):
            where = f"the train DataLoader's batch {k} (epoch {epoch + 1})"
            images, labels = loader_batch(
                self.net,
                item,
                where,
                nodes=self.data_nodes,
                role=self.data_role,
                num_classes=classes,
                warn_uint8=not self._warned_uint8,
            )
            self._warned_uint8 |= item[0].dtype == torch.uint8
            batch = self.tensor_batch(images, labels, self.num_classes)
            check_bernoulli_targets(self.net, batch, where)
            count += 1
            yield batch
        if count == 0:
            raise DataError(
                f"the train DataLoader yielded no batches in epoch {epoch + 1}; it is empty (or "
                "drop_last leaves nothing): pass data with at least one batch"
            )

    def _batches_per_epoch(self, epoch: int) -> int | None:
        """Batches of ``epoch``; None for a stream without a length (an IterableDataset)."""
        if self.loader is None:
            return len(self.epoch_batches(epoch))
        try:
            return len(self.loader)
        except TypeError:
            return None

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
        counts = [self._batches_per_epoch(e) for e in range(self.epoch, target)]
        total = None if None in counts else sum(c for c in counts if c is not None)
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
        start = time.perf_counter()
        for cb in self.callbacks:
            cb.on_epoch_start(self, epoch)
        energies, samples = [], 0
        for batch in self._epoch_data(epoch):
            metrics = self.learner.train_step(batch)
            # never go on (or report an epoch) on weights an update made NaN or infinite
            check_finite_params(self.net, self.learner.optimizer, self.learner.steps)
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
        if self.train_probe is not None:
            logs["train_accuracy"] = self.evaluate(self.train_probe)["test_accuracy"]
        if self.test_set is not None:
            logs.update(self.evaluate())
        logs["wall_s"] = time.perf_counter() - start
        earlier = self.history.data.get(self.monitor, [])
        best = records.improved(self.monitor, logs.get(self.monitor), earlier)
        self.history.append(**logs)
        self.epoch += 1
        bar.set_postfix({k: round(v, 4) for k, v in logs.items() if isinstance(v, float)})
        for cb in self.callbacks:
            cb.on_epoch_end(self, epoch, logs)
        if self.checkpoint is not None:
            if self.is_main:
                self.save(self.checkpoint)
                if best:
                    records.write_best(self.checkpoint)
            if self.dist is not None:
                self.dist.barrier()

    def evaluate(
        self, data: ImageDataset | None = None, *, T: int | None = None
    ) -> dict[str, float]:
        """Test accuracy (classification) or reconstruction MSE (generation) on ``data``, and
        ``test_loss``: the squared error per sample of the predicted output against the one-hot
        label, or of the reconstruction (summed over the node's values)."""
        data = data or self.test_set
        if data is None:
            raise ClampError("no test data to evaluate on; pass test= to the Trainer")
        T = T if T is not None else (self.eval_T if self.eval_T is not None else self.learner.T)
        return evaluate_on(self, data, T)

    # --- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly: parameters, optimizer, initializer, counters."""
        return records.trainer_state(self)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a checkpoint atomically (ConfigError naming the folder if it is not writable)."""
        return records.write_checkpoint(
            check_path(path, "path", error=ConfigError), self.state_dict()
        )

    def load(self, path: str | os.PathLike[str]) -> None:
        """Restore from a checkpoint written for the same graph (else CheckpointError)."""
        records.restore(self, path)
