"""What a run leaves behind besides its history: the checkpoint of the last epoch, the best
epoch's beside it (``best.pt``), and clear errors when a folder cannot take them."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from pcgraph.atomic import atomic_path
from pcgraph.errors import CheckpointError, ConfigError
from pcgraph.schema.io import spec_to_yaml
from pcgraph.train.checkpoint import load_checkpoint, save_checkpoint
from pcgraph.train.history import History

if TYPE_CHECKING:
    from pcgraph.train.trainer import Trainer

__all__ = [
    "best_path",
    "check_initializer_state",
    "check_writable",
    "default_monitor",
    "improved",
    "restore",
    "write_best",
    "write_checkpoint",
]


def default_monitor(task: str, has_test: bool) -> str:
    """The metric ``best.pt`` follows: test accuracy (classification) or reconstruction MSE
    (generation) when there is test data, else the training energy."""
    if not has_test:
        return "energy"
    return "test_accuracy" if task == "classification" else "test_mse"


def improved(monitor: str, value: Any, earlier: Sequence[Any]) -> bool:
    """Whether ``value`` beats every earlier epoch's (higher for an accuracy, lower else)."""
    if not isinstance(value, int | float) or value != value:  # None or NaN: never the best
        return False
    seen = [v for v in earlier if isinstance(v, int | float) and v == v]
    if not seen:
        return True
    return value > max(seen) if "accuracy" in monitor else value < min(seen)


def best_path(checkpoint: Path) -> Path:
    """``best.pt`` in the checkpoint's folder (``<stem>-best.pt`` if the checkpoint is named
    ``best.pt`` itself)."""
    best = checkpoint.with_name("best.pt")
    return best if best != checkpoint else checkpoint.with_name(f"{checkpoint.stem}-best.pt")


def _unwritable(path: Path, exc: OSError) -> ConfigError:
    return ConfigError(
        f"cannot write {path.name} into the folder {path.parent} ({exc.strerror or exc}); "
        "make sure that folder is writable and has free space, or pass checkpoint= a path "
        "in another one"
    )


def write_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> Path:
    """:func:`save_checkpoint`, with a ConfigError naming the folder when it cannot be written."""
    target = Path(path)
    try:
        return save_checkpoint(target, payload)
    except OSError as exc:
        raise _unwritable(target, exc) from None


def write_best(checkpoint: Path) -> Path:
    """Copy the checkpoint just written to :func:`best_path` (atomically)."""
    best = best_path(checkpoint)
    try:
        with atomic_path(best) as tmp:
            shutil.copyfile(checkpoint, tmp)
    except OSError as exc:
        raise _unwritable(best, exc) from None
    return best


def check_writable(checkpoint: Path) -> None:
    """Refuse, before any training, a checkpoint whose folder exists but cannot be written
    (a run must not fail at its end for want of a place to write)."""
    folder = checkpoint.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ConfigError(
            f"checkpoint {checkpoint}: {folder} is a file, not a folder; pass checkpoint= a "
            "path in a folder"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(
            f"checkpoint {checkpoint}: the folder {folder} is not writable; make it writable "
            "or pass checkpoint= a path in another folder"
        )


def trainer_state(trainer: Trainer) -> dict[str, Any]:
    """:meth:`Trainer.state_dict`: parameters, optimizer, initializer, counters, generator,
    history, epoch and task."""
    gen = trainer.learner.generator
    return {
        "spec_yaml": spec_to_yaml(trainer.net.spec),
        "model": trainer.net.state_dict(),
        "optimizer": trainer.learner.optimizer.state_dict(),
        "initializer": {
            "name": trainer.learner.initializer.name,
            "state": trainer.learner.initializer.state_dict(),
        },
        "learner": {
            "smm_total": trainer.learner.smm_total,
            "steps": trainer.learner.steps,
            "T": trainer.learner.T,
        },
        "generator": gen.get_state() if gen is not None else None,
        "history": trainer.history.to_dict(),
        "epoch": trainer.epoch,
        "task": trainer.task,
    }


def restore(trainer: Trainer, path: str | os.PathLike[str]) -> None:
    """Load ``path`` into ``trainer``: parameters, optimizer and initializer state, counters,
    generator, history and epoch (CheckpointError naming the file and what does not fit)."""
    data = load_checkpoint(path, spec=trainer.net.spec)
    check_initializer_state(path, data["initializer"], trainer.learner.initializer.name)
    parts = (
        ("parameters", lambda: trainer.net.load_state_dict(data["model"])),
        ("optimizer state", lambda: trainer.learner.optimizer.load_state_dict(data["optimizer"])),
        (
            "initializer state",
            lambda: trainer.learner.initializer.load_state_dict(data["initializer"]["state"]),
        ),
    )
    for what, load in parts:
        try:
            load()
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(
                f"{path}: its {what} do not fit this network ({first}); it was written for "
                "other shapes or options — retrain or load it with its own spec"
            ) from None
    trainer.learner.smm_total = int(data["learner"]["smm_total"])
    trainer.learner.steps = int(data["learner"]["steps"])
    if data.get("generator") is not None and trainer.learner.generator is not None:
        trainer.learner.generator.set_state(data["generator"])
    trainer.history = History(data["history"])
    trainer.epoch = int(data["epoch"])


def check_initializer_state(path: str | os.PathLike[str], saved: dict[str, Any], ours: str) -> None:
    """A checkpoint's learned initializer state (memories, class means, last states) goes
    only into an initializer that reads it: the same one, or ``auto`` and ``memory``, which
    share their memories. Anything else would drop it silently."""
    name = saved.get("name")
    shared = {name, ours} <= {"auto", "memory"}
    if name != ours and not shared and _holds_tensors(saved.get("state")):
        raise CheckpointError(
            f"{path}: it was trained with init {name!r}, whose learned state this learner's "
            f"init {ours!r} cannot use (it would be dropped, and evaluation would start from "
            f"another initialization); build the PCLearner with init={name!r}"
        )


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
