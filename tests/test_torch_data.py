"""PyTorch-native data and logging (issue #15): torch Datasets and DataLoaders through the
Trainer, the stream-aligned batch sampler, CIFAR-10 in its own format, CSV/JSON-lines and
TensorBoard logs.

Expectations: the DataLoader path must give bit-identical weights to the ImageDataset path on
the same batches (the same math on the same data); the sampler's batches must have the
documented class layout (``stream_aligned_labels``); the CIFAR reader must return exactly the
bytes written (/255) in CIFAR's documented layout; logs must hold what the history holds.
"""

from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import pcgraph as pc
from pcgraph.cli.main import main
from pcgraph.data import (
    DataError,
    ImageDataset,
    StreamAlignedSampler,
    as_image_dataset,
    load_cifar10,
    stream_aligned_labels,
)
from pcgraph.train import CSVLogger, JSONLinesLogger, TensorBoardLogger, Trainer

ROOT = Path(__file__).resolve().parent.parent


def small_data(n: int = 40, seed: int = 0) -> ImageDataset:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, 4, 4, generator=g)
    labels = torch.arange(n) % 4
    return ImageDataset(
        images=images, labels=labels, name="toy", split="train", source="gen", num_classes=4
    )


def learner(seed: int = 0) -> pc.PCLearner:
    net = pc.compile(pc.mlp([16, 8, 4], activation="tanh"), seed=seed, dtype=torch.float64)
    return pc.PCLearner(net, init="forward", T=3, lr_neurons=0.1)


# --- DataLoader / Dataset / tensors ------------------------------------------------------------
def test_dataloader_gives_the_same_weights_as_the_imagedataset_path() -> None:
    data = small_data()
    ref = Trainer(learner(), data, batch_size=8, epochs=2, seed=3, progress=False)
    ref.fit()
    # the same index batches, epoch by epoch, through a user's DataLoader over a TensorDataset
    batches = [b.tolist() for e in range(2) for b in ref.epoch_batches(e)]
    per_epoch = len(batches) // 2

    class Replay(torch.utils.data.Sampler[list[int]]):
        def __init__(self) -> None:
            self.epoch = 0

        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch

        def __iter__(self):  # type: ignore[no-untyped-def]
            return iter(batches[self.epoch * per_epoch : (self.epoch + 1) * per_epoch])

        def __len__(self) -> int:
            return per_epoch

    loader = DataLoader(TensorDataset(data.images, data.labels), batch_sampler=Replay())
    other = Trainer(learner(), loader, progress=False, epochs=2)
    other.fit()
    for p, q in zip(ref.net.parameters(), other.net.parameters(), strict=True):
        assert torch.equal(p, q)
    assert ref.history.to_dict()["energy"] == pytest.approx(other.history.to_dict()["energy"])


def test_a_map_style_dataset_and_a_tensor_pair_train_like_the_imagedataset() -> None:
    data = small_data()

    class Pairs(torch.utils.data.Dataset):  # type: ignore[type-arg]
        def __len__(self) -> int:
            return len(data)

        def __getitem__(self, i: int):  # type: ignore[no-untyped-def]
            return data.images[i], int(data.labels[i])

    runs = []
    for source in (data, Pairs(), (data.images, data.labels)):
        t = Trainer(learner(), source, batch_size=8, epochs=1, seed=1, progress=False)
        t.fit()
        runs.append([p.detach().clone() for p in t.net.parameters()])
    for other in runs[1:]:
        for p, q in zip(runs[0], other, strict=True):
            assert torch.equal(p, q)


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        (42, "cannot use a int as data"),
        ([(torch.zeros(3), "cat")], "not a class index"),
        ([(torch.zeros(3), 1), (torch.zeros(4), 0)], "differs from item 0"),
        ([([0.0, 1.0], 1)], "not a tensor"),
        ([torch.zeros(3)], "expected an (input, target) pair"),
        ((torch.zeros(4, 3), torch.zeros(4)), "integer class indices"),
        ((torch.zeros(4, 3), torch.zeros(5, dtype=torch.int64)), "one class index per input"),
        ([], "empty"),
    ],
)
def test_bad_datasets_name_the_item(bad: object, fragment: str) -> None:
    with pytest.raises(DataError, match=None) as info:
        as_image_dataset(bad)
    assert fragment in str(info.value)


# --- StreamAlignedSampler ----------------------------------------------------------------------
def test_stream_aligned_sampler_layout_every_batch_and_rank_shards() -> None:
    labels = torch.arange(60) % 3  # 20 per class
    sampler = StreamAlignedSampler(labels, 12, num_classes=3, seed=5)
    layout = stream_aligned_labels(12, 3)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        seen: set[int] = set()
        batches = list(sampler)
        assert len(batches) == len(sampler) == 5
        for batch in batches:
            assert torch.equal(labels[torch.tensor(batch)], layout)  # the documented layout
            assert not seen.intersection(batch)  # each sample at most once per epoch
            seen.update(batch)
        shards = [
            StreamAlignedSampler(labels, 12, num_classes=3, seed=5, rank=r, world_size=2)
            for r in range(2)
        ]
        for s in shards:
            s.set_epoch(epoch)
        for whole, (a, b) in zip(batches, zip(*shards, strict=True), strict=True):
            assert a + b == whole  # contiguous shards that make up the global batch
    with pytest.raises(DataError):
        StreamAlignedSampler(labels, 10, num_classes=3)  # not a multiple of C


def test_stream_aligned_sampler_in_a_users_dataloader_trains_average_init() -> None:
    data = small_data(48)
    sampler = StreamAlignedSampler(data.labels, 8, num_classes=4)
    loader = DataLoader(TensorDataset(data.images, data.labels), batch_sampler=sampler)
    net = pc.compile(pc.mlp([16, 8, 4], activation="tanh"), seed=0, dtype=torch.float64)
    lrn = pc.PCLearner(net, init="average", T=2, lr_neurons=0.1)
    history = Trainer(lrn, loader, epochs=2, progress=False).fit()
    assert len(history.to_dict()["energy"]) == 2


# --- CIFAR-10 ----------------------------------------------------------------------------------
def write_cifar(root: Path, per_batch: int = 10, seed: int = 0) -> dict[str, torch.Tensor]:
    """A CIFAR-10 "python version" folder in the official layout (pickled dicts of bytes keys,
    data uint8 [N, 3072], labels a list), with ``per_batch`` images per batch file."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    g = torch.Generator().manual_seed(seed)
    written = {}
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        data = torch.randint(0, 256, (per_batch, 3072), generator=g, dtype=torch.uint8)
        labels = [int(v) for v in torch.arange(per_batch) % 10]
        try:
            import numpy as np

            payload: object = np.asarray(data.numpy())
        except ImportError:  # pragma: no cover - numpy ships with torch's wheels
            payload = bytes(data.flatten().tolist())
        with (folder / name).open("wb") as f:
            pickle.dump({b"data": payload, b"labels": labels, b"batch_label": name.encode()}, f)
        written[name] = data
    with (folder / "batches.meta").open("wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in pc.data.CIFAR10_CLASSES]}, f)
    return written


def test_cifar10_reader_returns_the_bytes_in_cifars_layout(tmp_path: Path) -> None:
    written = write_cifar(tmp_path)
    train = load_cifar10(tmp_path, "train")
    test = load_cifar10(tmp_path / "cifar-10-batches-py", "test")
    assert train.images.shape == (50, 3, 32, 32) and test.images.shape == (10, 3, 32, 32)
    first = written["data_batch_1"][0]  # red plane, then green, then blue, each row-major
    assert torch.equal(train.images[0, 0].flatten(), first[:1024].float() / 255)
    assert torch.equal(train.images[0, 2, 31, 31], first[3071].float() / 255)
    assert torch.equal(test.labels, torch.arange(10) % 10)
    assert train.num_classes == 10 and train.name == "cifar10"


def test_cifar10_reader_refuses_code_in_a_pickle_and_bad_folders(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"

    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (Path.touch, (tmp_path / "pwned",))

    with (folder / "test_batch").open("wb") as f:
        pickle.dump({b"data": Evil(), b"labels": [0]}, f)
    with pytest.raises(DataError, match="refused to load"):
        load_cifar10(tmp_path, "test")
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(DataError, match="no CIFAR-10 batches under"):
        load_cifar10(tmp_path / "nowhere", "train")
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="missing CIFAR-10 batch file"):
        load_cifar10(tmp_path, "train")
    with (folder / "data_batch_3").open("wb") as f:
        pickle.dump({b"data": bytes(100), b"labels": [0]}, f)
    with pytest.raises(DataError, match="expected 1 × 3072"):
        load_cifar10(tmp_path, "train")


def test_cli_trains_the_alexnet_topology_on_a_cifar_folder_and_logs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_cifar(tmp_path / "data", per_batch=4)
    out, logs = tmp_path / "run", tmp_path / "logs"
    rc = main(
        [
            "train",
            str(ROOT / "topologies" / "alexnet_cifar10.yaml"),
            "--data",
            "cifar10",
            "--data-root",
            str(tmp_path / "data"),
            "--epochs",
            "2",
            "--batch-size",
            "10",
            "--T",
            "2",
            "--out",
            str(out),
            "--log-dir",
            str(logs),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 0, err
    history = json.loads((out / "history.json").read_text())
    assert len(history["test_accuracy"]) == 2
    # the CSV and JSON-lines logs hold the history's epoch rows and one row per update
    with (logs / "epochs.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [float(r["test_accuracy"]) for r in rows] == pytest.approx(history["test_accuracy"])
    steps = [json.loads(line) for line in (logs / "steps.jsonl").read_text().splitlines()]
    assert len(steps) == 2 * 2  # 20 training images / batch 10, 2 epochs
    assert {"energy", "smm_total", "wall_s", "energy/c1", "energy/label"} <= set(steps[0])
    assert steps[-1]["smm_total"] == history["smm_total"][-1]
    # TensorBoard's own reader finds the scalars
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logs))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/energy", "train/energy/c1", "train/smm_total", "epoch/test_accuracy"} <= tags
    accs = [e.value for e in acc.Scalars("epoch/test_accuracy")]
    assert accs == pytest.approx(history["test_accuracy"], abs=1e-6)


def test_cli_cifar_options_are_checked_up_front(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    topo = str(ROOT / "topologies" / "alexnet_cifar10.yaml")
    assert main(["train", topo, "--data", "cifar10", "--out", str(tmp_path / "r")]) == 2
    assert "--data cifar10 needs --data-root" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                topo,
                "--data",
                "cifar10",
                "--data-root",
                str(tmp_path),
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 2
    )
    assert "no CIFAR-10 batches under" in capsys.readouterr().err


def test_loggers_write_files_a_user_can_read(tmp_path: Path) -> None:
    data = small_data()
    cbs = [CSVLogger(tmp_path), JSONLinesLogger(tmp_path), TensorBoardLogger(tmp_path / "tb")]
    t = Trainer(learner(), data, data, batch_size=8, epochs=1, progress=False, callbacks=cbs)
    t.fit()
    with (tmp_path / "steps.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 and "energy/h1" in rows[0]
    epochs = [json.loads(x) for x in (tmp_path / "epochs.jsonl").read_text().splitlines()]
    assert epochs[0]["test_accuracy"] == pytest.approx(t.history.to_dict()["test_accuracy"][0])
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_a_dataloader_is_never_read_ahead() -> None:
    """The Trainer iterates a user's DataLoader as it is: building it reads no item."""
    data = small_data()
    reads: list[int] = []

    class Counting(torch.utils.data.Dataset):  # type: ignore[type-arg]
        def __len__(self) -> int:
            return len(data)

        def __getitem__(self, i: int):  # type: ignore[no-untyped-def]
            reads.append(i)
            return data.images[i], int(data.labels[i])

    trainer = Trainer(learner(), DataLoader(Counting(), batch_size=8), progress=False)
    assert reads == []
    trainer.fit(1)
    assert sorted(reads) == list(range(len(data)))  # one epoch: each item once
