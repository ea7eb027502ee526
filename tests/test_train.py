"""Trainer, history, checkpoints (atomic, safe, exact resume) and the train/evaluate/reconstruct/
draw commands, end to end on the embedded data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import pcgraph as pc
from pcgraph.cli import main
from pcgraph.data import embedded_dataset
from pcgraph.errors import CheckpointError, ConfigError
from pcgraph.train import Callback, EpochRecorder, History, Trainer, load_checkpoint

ROOT = Path(__file__).resolve().parent.parent
TOPO = ROOT / "topologies"


@pytest.fixture(scope="module")
def small_data() -> tuple[pc.data.ImageDataset, pc.data.ImageDataset]:  # type: ignore[name-defined]
    gen = torch.Generator().manual_seed(0)
    return (
        embedded_dataset("train").subset(400, generator=gen),
        embedded_dataset("test").subset(100, generator=gen),
    )


def make_trainer(
    topology: str,
    init: str,
    data: tuple,
    tmp: Path | None = None,  # type: ignore[type-arg]
    epochs: int = 2,
) -> Trainer:
    net = pc.compile(TOPO / f"{topology}.yaml", seed=0)
    clamp = "train" if net.spec.names_with_role("input") else "generate"
    learner = pc.PCLearner(
        net,
        init=init,
        T=3,
        lr_neurons=0.05,
        clamp=clamp,
        optimizer=torch.optim.AdamW(net.parameters(), lr=1e-3),
        generator=torch.Generator().manual_seed(3),
    )
    return Trainer(
        learner,
        data[0],
        data[1],
        batch_size=50,
        epochs=epochs,
        progress=False,
        checkpoint=None if tmp is None else tmp / "ckpt.pt",
    )


@pytest.mark.parametrize(
    ("topology", "init"),
    [
        ("mlp5_fashion", "hybrid"),
        ("mlp5_fashion", "random"),
        ("decoder4_fashion", "memory"),
        ("decoder4_fashion", "null"),
    ],
)
def test_resume_from_checkpoint_equals_uninterrupted_run(
    tmp_path: Path,
    small_data: tuple,
    topology: str,
    init: str,  # type: ignore[type-arg]
) -> None:
    full = make_trainer(topology, init, small_data, epochs=2)
    full.fit()
    first = make_trainer(topology, init, small_data, tmp_path, epochs=1)
    first.fit()
    resumed = make_trainer(topology, init, small_data, epochs=2)
    resumed.load(tmp_path / "ckpt.pt")
    assert resumed.epoch == 1
    resumed.fit()
    for a, b in zip(full.net.parameters(), resumed.net.parameters(), strict=True):
        assert torch.equal(a, b)
    # the same numbers, except the wall time of each epoch (a measurement, never reproducible)
    same = [
        {k: v for k, v in t.history.to_dict().items() if k != "wall_s"} for t in (full, resumed)
    ]
    assert same[0] == same[1]


def test_history_has_one_row_per_epoch_and_metrics_by_task(small_data: tuple) -> None:  # type: ignore[type-arg]
    seen = []

    class Record(Callback):
        def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict) -> None:  # type: ignore[type-arg]
            seen.append(epoch)

    t = make_trainer("mlp5_fashion", "forward", small_data, epochs=2)
    t.callbacks.append(Record())
    h = t.fit()
    assert seen == [0, 1] and h["epoch"] == [1, 2]
    assert all(0.0 <= a <= 1.0 for a in h["test_accuracy"])
    # SMMs: 8 updates per epoch, each 2T + 4 (forward on mlp5 under train)
    assert h["smm_total"] == [8 * (2 * 3 + 4), 16 * (2 * 3 + 4)]
    g = make_trainer("decoder4_fashion", "zero", small_data, epochs=1).fit()
    assert "test_mse" in g and g["test_mse"][0] > 0


def test_history_round_trip(tmp_path: Path) -> None:
    h = History()
    h.append(epoch=1, energy=2.0)
    h.append(epoch=2, test_accuracy=0.5)
    assert h["energy"] == [2.0, None] and h["test_accuracy"] == [None, 0.5]
    h.save(tmp_path / "h.json")
    assert History.load(tmp_path / "h.json").to_dict() == h.to_dict()


def test_checkpoint_of_another_graph_is_refused(tmp_path: Path, small_data: tuple) -> None:  # type: ignore[type-arg]
    t = make_trainer("mlp5_fashion", "forward", small_data, tmp_path, epochs=1)
    t.fit()
    other = pc.compile(TOPO / "skip_mlp.yaml")
    with pytest.raises(CheckpointError, match="differs"):
        load_checkpoint(tmp_path / "ckpt.pt", spec=other.spec)


def test_corrupt_or_missing_checkpoint_gives_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_checkpoint_write_is_atomic(
    tmp_path: Path,
    small_data: tuple,  # type: ignore[type-arg]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    t = make_trainer("mlp5_fashion", "forward", small_data, tmp_path, epochs=1)
    t.fit()
    before = (tmp_path / "ckpt.pt").read_bytes()

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(ConfigError, match="disk full"):  # a pcgraph error naming the folder
        t.save(tmp_path / "ckpt.pt")
    assert (tmp_path / "ckpt.pt").read_bytes() == before  # the old file is intact
    # no temp file left (best.pt: the best epoch, kept beside the checkpoint)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "ckpt.pt"]


def test_cli_train_evaluate_reconstruct_draw(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    config = tmp_path / "run.yaml"
    config.write_text("epochs: 1\nT: 2\nbatch-size: 50\n")
    rc = main(
        [
            "train",
            str(TOPO / "mlp5_fashion.yaml"),
            "--embedded",
            "--config",
            str(config),
            "--train-size",
            "300",
            "--test-size",
            "100",
            "--init",
            "hybrid",
            "--epochs",
            "2",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0
    history = json.loads((out / "history.json").read_text())
    assert history["epoch"] == [1, 2]  # the CLI's --epochs overrides the config's 1
    for name in ("checkpoint.pt", "history.png", "graph.png"):
        assert (out / name).stat().st_size > 0
    capsys.readouterr()
    assert main(["evaluate", str(out / "checkpoint.pt"), "--test-size", "100"]) == 0
    acc = json.loads(capsys.readouterr().out)["test_accuracy"]
    assert acc == pytest.approx(history["test_accuracy"][-1])  # same model, same test set
    flow = tmp_path / "flow.gif"
    assert main(["flow", str(out / "checkpoint.pt"), "-o", str(flow), "-n", "4", "--T", "3"]) == 0
    from PIL import Image

    with Image.open(flow) as gif:
        assert gif.n_frames == 4  # t = 0 … T

    gen = tmp_path / "gen"
    assert (
        main(
            [
                "train",
                str(TOPO / "decoder4_fashion.yaml"),
                "--embedded",
                "--epochs",
                "1",
                "--train-size",
                "200",
                "--test-size",
                "50",
                "--T",
                "2",
                "--batch-size",
                "50",
                "--out",
                str(gen),
                "--no-progress",
            ]
        )
        == 0
    )
    png = tmp_path / "rec.png"
    assert main(["reconstruct", str(gen / "checkpoint.pt"), "-o", str(png), "-n", "4"]) == 0
    assert png.stat().st_size > 0
    drawing = tmp_path / "loop.png"
    assert main(["draw", str(TOPO / "loop.yaml"), "-o", str(drawing)]) == 0
    assert drawing.stat().st_size > 0


def test_cli_train_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(
        [
            "train",
            str(TOPO / "decoder4_fashion.yaml"),
            "--init",
            "forward",
            "--embedded",
            "--out",
            str(tmp_path),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "root z is not clamped" in err and "Traceback" not in err
    bad = tmp_path / "cfg.yaml"
    bad.write_text("epochz: 3\n")
    rc = main(["train", str(TOPO / "mlp5_fashion.yaml"), "--config", str(bad)])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown option 'epochz'" in err
    rc = main(["evaluate", str(tmp_path / "nope.pt")])
    assert rc == 2 and "no such checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("epochs: two\n", "option 'epochs' must be int, got 'two'"),
        ("lr: fast\n", "option 'lr' must be int or float, got 'fast'"),
        ("epochs: 2\nepochs: 3\n", "duplicate key 'epochs' (first on line 1, again on line 2)"),
        ("epochs: [1,\n", "YAML syntax error"),
        ("epochs: !!python/object/apply:os.system ['true']\n", "no !tags"),
        ("- epochs\n", "expected a mapping of options"),
        ("init: off\n", "option 'init' must be str, got False"),
    ],
)
def test_bad_config_files_get_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, expected: str
) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(content)
    rc = main(["train", str(TOPO / "mlp5_fashion.yaml"), "--config", str(cfg)])
    err = capsys.readouterr().err
    assert rc == 2 and expected in err and "Traceback" not in err
    assert str(cfg) in err  # the file is named


def test_config_file_that_is_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_bytes(b"epochs: \xff\xfe\n")
    rc = main(["train", str(TOPO / "mlp5_fashion.yaml"), "--config", str(cfg)])
    err = capsys.readouterr().err
    assert rc == 2 and "not UTF-8" in err and str(cfg) in err


def _tampered(tmp_path: Path, small_data: tuple, change: object) -> Path:  # type: ignore[type-arg]
    t = make_trainer("mlp5_fashion", "forward", small_data, tmp_path, epochs=1)
    t.fit()
    data = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    change(data)  # type: ignore[operator]
    out = tmp_path / "tampered.pt"
    torch.save(data, out)
    return out


def _first_weight(data: dict) -> str:  # type: ignore[type-arg]
    return next(k for k in data["model"] if k.endswith("weight"))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.pop("model"), "no 'model' entry"),
        (lambda d: d.update(epoch="one"), "entry 'epoch' is a str"),
        (lambda d: d["learner"].pop("steps"), "'learner' lacks steps"),
        (lambda d: d.update(spec_yaml="nodes: [{name: a}]\n"), "stored graph spec is invalid"),
        (
            lambda d: d["model"][_first_weight(d)].fill_(float("nan")),
            "holds NaN or infinite values",
        ),
    ],
)
def test_tampered_checkpoints_are_named(
    tmp_path: Path,
    small_data: tuple,  # type: ignore[type-arg]
    change: object,
    expected: str,
) -> None:
    path = _tampered(tmp_path, small_data, change)
    with pytest.raises(CheckpointError) as info:
        make_trainer("mlp5_fashion", "forward", small_data).load(path)
    assert expected in str(info.value) and "tampered.pt" in str(info.value)


def test_checkpoint_with_wrong_shapes_is_refused(
    tmp_path: Path,
    small_data: tuple,  # type: ignore[type-arg]
) -> None:
    def shrink(d: dict) -> None:  # type: ignore[type-arg]
        key = _first_weight(d)
        d["model"][key] = d["model"][key][:, :3].clone()

    path = _tampered(tmp_path, small_data, shrink)
    with pytest.raises(CheckpointError, match="parameters do not fit this network"):
        make_trainer("mlp5_fashion", "forward", small_data).load(path)


def test_corrupt_options_beside_a_checkpoint(
    tmp_path: Path,
    small_data: tuple,  # type: ignore[type-arg]
    capsys: pytest.CaptureFixture[str],
) -> None:
    t = make_trainer("mlp5_fashion", "forward", small_data, tmp_path, epochs=1)
    t.fit()
    (tmp_path / "checkpoint.pt").write_bytes((tmp_path / "ckpt.pt").read_bytes())
    for content, expected in (("{not json", "cannot be read"), ('{"epochs": -3}', "--epochs")):
        (tmp_path / "options.json").write_text(content)
        rc = main(["evaluate", str(tmp_path / "checkpoint.pt"), "--test-size", "10"])
        err = capsys.readouterr().err
        assert rc == 2 and "options.json" in err and expected in err and "Traceback" not in err


def test_epoch_recorder_records_each_epoch_and_evaluates_after_its_updates(
    small_data: tuple,  # type: ignore[type-arg]
) -> None:
    seen: list[pc.StepMetrics] = []

    class Keep(Callback):
        def on_batch_end(self, trainer: Trainer, step: int, metrics: pc.StepMetrics) -> None:
            seen.append(metrics)

    calls = []

    def evaluate(learner: pc.PCLearner) -> dict[str, float]:
        calls.append(learner.steps)
        return {"score": float(len(calls))}

    trainer = make_trainer("mlp5_fashion", "forward", (small_data[0], None), epochs=3)
    recorder = EpochRecorder(evaluate)
    trainer.callbacks += [recorder, Keep()]
    trainer.fit()
    rec = recorder.record
    per_epoch = len(small_data[0]) // trainer.batch_size
    for key in ("train_seconds", "smm_total", "energy_before", "energy_after", "score"):
        assert len(rec[key]) == 3, key
    assert rec["score"] == [1.0, 2.0, 3.0]
    assert calls == [per_epoch, 2 * per_epoch, 3 * per_epoch]  # after each epoch's updates
    assert rec["train_seconds"] == sorted(rec["train_seconds"]) and rec["train_seconds"][0] > 0
    assert rec["smm_total"][-1] == trainer.learner.smm_total
    assert rec["smm_per_step"] == [m.smm for m in seen[:3]]
    assert recorder.last_metrics is seen[-1]
    for epoch in range(3):  # the mean energy per sample over the epoch's updates
        metrics = seen[epoch * per_epoch : (epoch + 1) * per_epoch]
        want = sum(float(m.energy_after) for m in metrics) / per_epoch / trainer.batch_size
        assert rec["energy_after"][epoch] == pytest.approx(want, rel=1e-6)
