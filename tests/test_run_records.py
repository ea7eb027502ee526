"""What a Trainer run records and when it stops (issue #29): NaN/inf weights end the run before
an epoch is reported; the history holds wall time, train accuracy and test loss; ``best.pt``
keeps the best epoch beside the checkpoint; an unwritable folder is a pcgraph error naming it.

Expectations: accuracy and loss are recomputed here from ``learner.predict`` and the one-hot
labels (the definitions in the Trainer's docstring); ``best.pt`` must hold the epoch that the
history says is best; test_loss = test_mse × values per sample for reconstructions (the same
squared errors, divided by samples instead of values).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

import pcgraph as pc
from pcgraph.errors import ConfigError, EnergyError
from pcgraph.train import Trainer, load_checkpoint

N, F, C = 40, 16, 4


def data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(N, F, generator=g), torch.arange(N) % C


def learner(lr: float = 1e-2, dtype: torch.dtype = torch.float64) -> pc.PCLearner:
    net = pc.compile(pc.mlp([F, 8, C], activation="tanh"), seed=0, dtype=dtype)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    return pc.PCLearner(net, init="forward", T=2, lr_neurons=0.1, optimizer=opt)


# --- non-finite weights ------------------------------------------------------------------------
def test_inf_weights_end_the_run_naming_the_parameter_and_the_learning_rate(tmp_path: Path) -> None:
    ckpt = tmp_path / "checkpoint.pt"
    # one update per epoch: the epoch would be reported right after the update that blew up
    # (SGD with lr=1e38 on float32 weights: w − lr·g overflows to ±inf where |g| > 3.4)
    lrn = learner(lr=1e38, dtype=torch.float32)
    t = Trainer(lrn, data(), data(1), batch_size=N, progress=False, checkpoint=ckpt)
    with pytest.raises(
        EnergyError, match=r"parameter '([\w.]+)'.*lower the weight learning rate \(lr=1e\+38\)"
    ) as info:
        t.fit()
    named = str(info.value).split("parameter '")[1].split("'")[0]
    params = dict(t.net.named_parameters())
    assert not bool(torch.isfinite(params[named]).all())  # the one named is non-finite …
    first = next(n for n, p in params.items() if not bool(torch.isfinite(p).all()))
    assert named == first  # … and it is the first such
    assert len(t.history) == 0 and not ckpt.exists()  # no epoch reported or saved


# --- history -----------------------------------------------------------------------------------
def test_history_holds_wall_time_train_accuracy_and_test_loss() -> None:
    x, y = data()
    tx, ty = data(1)
    t = Trainer(learner(), (x, y), (tx, ty), batch_size=8, epochs=2, progress=False)
    started = time.perf_counter()
    h = t.fit()
    elapsed = time.perf_counter() - started
    assert len(h["wall_s"]) == 2 and all(w > 0 for w in h["wall_s"])
    assert sum(h["wall_s"]) <= elapsed  # each epoch's own time, within the run's
    with torch.no_grad():  # the definitions, from the learner's own predictions
        train_out = t.learner.predict({"x": x.double()})["y"]
        test_out = t.learner.predict({"x": tx.double()})["y"]
    train_acc = float((train_out.argmax(-1) == y).double().mean())
    one_hot = torch.nn.functional.one_hot(ty, C).double()
    test_loss = float(((test_out - one_hot) ** 2).sum(-1).mean())
    assert h["train_accuracy"][-1] == pytest.approx(train_acc)
    assert h["test_loss"][-1] == pytest.approx(test_loss)


def test_generation_test_loss_is_the_squared_error_per_sample() -> None:
    spec = pc.decoder([4, 8, F], activation="tanh")
    net = pc.compile(spec, seed=0, dtype=torch.float64)
    lrn = pc.PCLearner(net, init="zero", T=2, clamp="generate")
    h = Trainer(lrn, data(), data(1), batch_size=8, progress=False).fit()
    assert "train_accuracy" not in h  # no labels to score
    assert h["test_loss"][0] == pytest.approx(h["test_mse"][0] * F)


# --- best.pt -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("monitor", "pick"), [("energy", min), ("test_accuracy", max)])
def test_best_pt_keeps_the_best_epoch_beside_the_checkpoint(
    tmp_path: Path, monitor: str, pick: object
) -> None:
    ckpt = tmp_path / "checkpoint.pt"
    t = Trainer(
        learner(lr=0.05),
        data(),
        data(1),
        batch_size=8,
        epochs=4,
        progress=False,
        checkpoint=ckpt,
        monitor=monitor,
    )
    values = t.fit()[monitor]
    best_epoch = values.index(pick(values)) + 1  # type: ignore[operator]  # first best wins
    best = load_checkpoint(tmp_path / "best.pt", spec=t.net.spec)
    assert best["epoch"] == best_epoch
    assert load_checkpoint(ckpt)["epoch"] == 4  # the checkpoint is the last epoch


def test_an_unknown_monitor_lists_the_metrics() -> None:
    with pytest.raises(ConfigError, match=r"monitor 'accuracy'.*test_accuracy"):
        Trainer(learner(), data(), data(1), batch_size=8, monitor="accuracy")


# --- unwritable folders ------------------------------------------------------------------------
def test_a_checkpoint_in_a_folder_that_cannot_be_written_names_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "runs"
    blocker.write_text("a file, not a folder")
    with pytest.raises(ConfigError, match=rf"{blocker}.*not a folder"):
        Trainer(learner(), data(), batch_size=8, checkpoint=blocker / "checkpoint.pt")
    t = Trainer(learner(), data(), batch_size=8, progress=False)

    def read_only(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(torch, "save", read_only)  # as a read-only folder answers
    with pytest.raises(ConfigError, match=rf"folder {tmp_path} \(Permission denied\)"):
        t.save(tmp_path / "checkpoint.pt")
