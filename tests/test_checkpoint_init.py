"""A checkpoint's learned initializer state is never dropped silently on load: ``auto`` and
``memory`` share their memories (either loads the other's, and evaluates as it did), any other
initializer that would drop a learned state is refused, naming both."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import pcgraph as pc
from pcgraph.data import embedded_dataset
from pcgraph.errors import CheckpointError
from pcgraph.train import Trainer

SPEC = Path(__file__).resolve().parent.parent / "topologies" / "fully_connected_groups.yaml"


def _trainer(init: str) -> Trainer:
    net = pc.compile(SPEC, seed=0)
    learner = pc.PCLearner(
        net, init=init, T=2, optimizer=torch.optim.AdamW(net.parameters(), lr=1e-3)
    )
    train, test = embedded_dataset("train").subset(100), embedded_dataset("test").subset(50)
    return Trainer(learner, train, test, batch_size=50, epochs=1, progress=False)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, float]]:
    out = {}
    for init in ("memory", "auto"):
        trainer = _trainer(init)
        trainer.fit()
        path = tmp_path_factory.mktemp(init) / "checkpoint.pt"
        trainer.save(path)
        out[init] = (path, trainer.evaluate()["test_accuracy"])
    return out


@pytest.mark.parametrize(("trained", "loaded"), [("memory", "auto"), ("auto", "memory")])
def test_auto_and_memory_load_each_others_memories(
    saved: dict[str, tuple[Path, float]], trained: str, loaded: str
) -> None:
    path, accuracy = saved[trained]
    trainer = _trainer(loaded)
    trainer.load(path)
    # the same memories, the same network, the same evaluation (before the fix: 0.1–0.3)
    assert trainer.evaluate()["test_accuracy"] == pytest.approx(accuracy, abs=1e-12)


@pytest.mark.parametrize("trained", ["memory", "auto"])
def test_an_initializer_that_would_drop_the_memories_is_refused(
    saved: dict[str, tuple[Path, float]], trained: str
) -> None:
    path, _ = saved[trained]
    with pytest.raises(CheckpointError, match=rf"trained with init '{trained}'.*init 'zero'"):
        _trainer("zero").load(path)
