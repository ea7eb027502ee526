"""Up-front checks of the CLI's options: every number, choice, device and output path is checked
before any work starts, so a bad option costs nothing and names itself and the fix."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

from pcgraph.errors import ConfigError
from pcgraph.limits import check_step_limit
from pcgraph.solvers import get_solver

__all__ = ["check_device", "check_output_dir", "check_output_file", "check_train"]

_POSITIVE_INTS = ("T", "epochs", "batch_size", "patterns", "heads", "embed_dim")
_OPTIONAL_POSITIVE_INTS = ("train_size", "test_size")
_POSITIVE_FLOATS = ("lr", "lr_neurons", "mem_lr")
_OPTIONAL_POSITIVE_FLOATS = ("tol", "beta")
_BOOLS = ("cuda_graph", "mem_linear", "embedded", "progress")
_CHOICES = {
    "task": ("auto", "classification", "generation"),
    "data": ("fashion-mnist", "mnist", "kmnist", "cifar10"),
    "schedule": ("standard", "incremental"),
    "algorithm": ("pc", "epc"),
    "step_rule": ("fixed", "backtrack"),
    "mem_loss": ("energy", "sweep", "target"),
}
IMAGE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def check_train(opts: dict[str, Any]) -> None:
    """Every training option is of its type and in its range (raises ConfigError)."""
    for key in _POSITIVE_INTS:
        _int(opts, key, minimum=1)
        if key == "T":  # first: a T that would run for hours is the news, whatever else is wrong
            check_step_limit(opts["T"], "--T")
    for key in _OPTIONAL_POSITIVE_INTS:
        if opts.get(key) is not None:
            _int(opts, key, minimum=1)
    _int(opts, "K", minimum=0)
    _int(opts, "seed", minimum=0)
    _int(opts, "mem_steps", minimum=0)
    for key in _POSITIVE_FLOATS:
        _float(opts, key, positive=True)
    for key in _OPTIONAL_POSITIVE_FLOATS:
        if opts.get(key) is not None:
            _float(opts, key, positive=True)
    _float(opts, "weight_decay", positive=False)
    for key in _BOOLS:
        if not isinstance(opts.get(key), bool):
            raise ConfigError(f"{_flag(key)} must be true or false, got {opts.get(key)!r}")
    if opts["embed_dim"] % opts["heads"]:
        raise ConfigError(
            f"--heads {opts['heads']} must divide --embed-dim {opts['embed_dim']} (each head "
            f"gets embed-dim / heads dimensions); e.g. --embed-dim {opts['heads'] * 32}"
        )
    for key, valid in _CHOICES.items():
        value = opts.get(key)
        if value not in valid:
            raise ConfigError(
                f"{_flag(key)} {value!r} is not one of: {', '.join(valid)}"
                + (" (regression is not a task pcgraph trains)" if value == "regression" else "")
            )
    get_solver(opts.get("neuron_optimizer"), what="--neuron-optimizer")  # any registered solver
    for key in ("data_root", "log_dir"):
        if opts.get(key) is not None and not isinstance(opts[key], str):
            raise ConfigError(f"{_flag(key)} must be a folder path, got {opts[key]!r}")
    if opts.get("embedded") and opts.get("data") not in (None, "fashion-mnist"):
        raise ConfigError(
            f"--embedded is the FashionMNIST subset; drop it to train on --data {opts['data']}"
        )
    if opts.get("data") == "cifar10" and not opts.get("data_root"):
        raise ConfigError(
            "--data cifar10 needs --data-root DIR, the folder that holds "
            "cifar-10-batches-py (unpacked from cifar-10-python.tar.gz; nothing is "
            "downloaded)"
        )
    check_device(str(opts["device"]))
    if opts.get("cuda_graph"):
        check_cuda_graph(opts)


def check_cuda_graph(opts: dict[str, Any]) -> None:
    """``--cuda-graph`` needs CUDA, ``--device cuda``, a fixed T and the fixed step rule."""
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(
            "--cuda-graph replays inference from a captured CUDA graph, and CUDA is not "
            "available here; drop --cuda-graph (or run with --device cuda on a CUDA machine)"
        )
    if not str(opts["device"]).startswith("cuda"):
        raise ConfigError(f"--cuda-graph needs --device cuda, got --device {opts['device']}")
    if opts.get("tol") is not None:
        raise ConfigError(
            "--cuda-graph runs a fixed T and cannot stop at --tol (the stop reads the energy on "
            "the host every step); drop one of them"
        )
    if opts.get("step_rule") == "backtrack":
        raise ConfigError("--step-rule backtrack needs the eager loop; drop --cuda-graph")


def _int(opts: dict[str, Any], key: str, *, minimum: int) -> None:
    value = opts.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{_flag(key)} must be a whole number, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{_flag(key)} must be ≥ {minimum}, got {value}")


def _float(opts: dict[str, Any], key: str, *, positive: bool) -> None:
    value = opts.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{_flag(key)} must be a number, got {value!r}")
    if not math.isfinite(value) or (value <= 0 if positive else value < 0):
        bound = "> 0" if positive else "≥ 0"
        raise ConfigError(f"{_flag(key)} must be a finite number {bound}, got {value}")


def check_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N`` on a machine that has it (raises ConfigError)."""
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device {name!r} is not a device; use cpu or cuda (cuda:N)") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {name!r}: pcgraph runs on cpu or cuda (cuda:N)")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: CUDA is not available here; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    return device


def check_output_dir(path: Path, flag: str = "--out") -> None:
    """``path`` is (or can be made) a folder this process can write in: created now, tried with
    a temporary file, so that a run never fails at its end for want of a place to write."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path}: is a file, not a folder; choose a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".pcgraph-write-test-"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"{flag} {path}: cannot write there ({exc.strerror or exc}); choose a writable folder"
        ) from None


def check_output_file(path: Path, flag: str, *, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> None:
    """``path`` is a new or existing file with a known suffix in a writable folder."""
    if path.suffix.lower() not in suffixes:
        raise ConfigError(
            f"{flag} {path}: unknown file type {path.suffix or '(none)'!r}; "
            f"use one of {', '.join(suffixes)}"
        )
    if path.is_dir():
        raise ConfigError(f"{flag} {path}: is a folder; name a file, e.g. {path / 'out.png'}")
    parent = path.parent if str(path.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise ConfigError(f"{flag} {path}: {parent} is a file, not a folder")
    check_output_dir(parent, flag)
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{flag} {path}: the file exists and is not writable")
