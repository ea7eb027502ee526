"""The options of ``pcgraph train`` — the ones that ``evaluate``, ``reconstruct`` and ``flow``
restore from a run's ``options.json`` — with their defaults, stated once here, and how they are
read from ``--config`` and the command line.

The optimisation defaults are the paper setting (:data:`PAPER_SETTING`), the one the docs'
results (docs/results.md) and the examples (``examples/_shared.py``) use. This module imports no
torch (``pcgraph check`` does not need it).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pcgraph.errors import ConfigError, SpecError
from pcgraph.registry import normalize_name
from pcgraph.yamlio import bool_hint, load_yaml

__all__ = [
    "MEMORY_OPTIONS",
    "PAPER_SETTING",
    "PAPER_SOURCE",
    "TRAIN_DEFAULTS",
    "init_options",
    "read_options",
]

# the paper setting: 5-layer MLP on FashionMNIST, batch 300, neuron SGD γ = 0.05, AdamW
# lr 5e-4 with weight decay 1e-4 (docs/results.md; examples/_shared.py add_common_args)
PAPER_SETTING: dict[str, Any] = {
    "batch_size": 300,
    "lr": 5e-4,
    "weight_decay": 1e-4,
    "lr_neurons": 0.05,
}
PAPER_SOURCE = "the paper setting of docs/results.md and the examples"

# the memory init's options: option key → keyword of pcgraph.init.memory.MemoryInit; the
# defaults below are MemoryInit's (a test holds them equal)
MEMORY_OPTIONS: dict[str, str] = {
    "patterns": "patterns",
    "heads": "heads",
    "embed_dim": "embed_dim",
    "beta": "beta",
    "mem_lr": "lr",
    "mem_steps": "steps",
    "mem_loss": "loss",
    "mem_linear": "linear",
}

TRAIN_DEFAULTS: dict[str, Any] = {
    "data": "fashion-mnist",
    "init": "auto",
    "T": 8,
    "epochs": 1,
    "batch_size": PAPER_SETTING["batch_size"],
    "lr": PAPER_SETTING["lr"],
    "lr_neurons": PAPER_SETTING["lr_neurons"],
    "weight_decay": PAPER_SETTING["weight_decay"],
    "neuron_optimizer": "sgd",
    "schedule": "standard",
    "algorithm": "pc",
    "tol": None,
    "step_rule": "fixed",
    "cuda_graph": False,
    "train_size": None,
    "test_size": None,
    "device": "cpu",
    "seed": 0,
    "out": "runs/train",
    "task": "auto",
    "embedded": False,
    "K": 2,
    "patterns": 512,
    "heads": 4,
    "embed_dim": 128,
    "beta": None,
    "mem_lr": 1e-3,
    "mem_steps": 1,
    "mem_loss": "energy",
    "mem_linear": False,
    "progress": True,
    "data_root": None,
    "log_dir": None,
}

# the types of the options whose default (None) does not tell it
_NONE_DEFAULT_TYPES: dict[str, tuple[type, ...]] = {
    "train_size": (int,),
    "test_size": (int,),
    "tol": (int, float),
    "beta": (int, float),
    "data_root": (str,),
    "log_dir": (str,),
}


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def read_options(args: argparse.Namespace) -> tuple[dict[str, Any], set[str]]:
    """The defaults, overridden by ``--config`` and then by the command line; returns the
    options and the keys the user gave (in the file or as flags)."""
    opts = dict(TRAIN_DEFAULTS)
    given: set[str] = set()
    if getattr(args, "config", None):
        path = Path(args.config)
        for key, value in _read_config(path).items():
            norm = str(key).replace("-", "_")
            if norm not in TRAIN_DEFAULTS:
                raise SpecError(
                    f"--config {path}: unknown option {key!r}; valid: {', '.join(TRAIN_DEFAULTS)}"
                )
            opts[norm] = _config_value(path, norm, value)
            given.add(norm)
    for key in TRAIN_DEFAULTS:
        value = getattr(args, key, None)
        if value is not None:
            opts[key] = value
            given.add(key)
    return opts, given


def _read_config(path: Path) -> dict[Any, Any]:
    if not path.is_file():
        raise SpecError(f"--config {path}: no such file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"--config {path}: cannot be read ({exc.strerror})") from None
    loaded = load_yaml(raw, f"--config {path}") or {}
    if not isinstance(loaded, dict):
        raise SpecError(f"--config {path}: expected a mapping of options, e.g. 'epochs: 2'")
    return loaded


def _config_value(path: Path, key: str, value: Any) -> Any:
    """A --config value of the option's type (ints for ints, numbers for floats, …)."""
    default = TRAIN_DEFAULTS[key]
    kinds = _NONE_DEFAULT_TYPES.get(key) or (
        (int, float) if isinstance(default, float) else (type(default),)
    )
    is_bool = isinstance(value, bool)
    ok = value is None and default is None
    ok = ok or (isinstance(value, kinds) and (bool in kinds or not is_bool))
    if not ok:
        want = " or ".join(k.__name__ for k in kinds)
        example = default if default is not None else _EXAMPLES.get(key)
        raise SpecError(
            f"--config {path}: option {key!r} must be {want}, got {value!r}"
            f"{bool_hint(value) if str in kinds else ''}; e.g. {key}: {example!r}"
        )
    return float(value) if float in kinds and not isinstance(value, bool | None) else value


_EXAMPLES: dict[str, Any] = {
    "train_size": 1000,
    "test_size": 500,
    "tol": 1e-4,
    "beta": 1.0,
    "data_root": "~/data",
    "log_dir": "runs/logs",
}


def init_options(opts: dict[str, Any], given: set[str] | None = None) -> dict[str, Any]:
    """The keyword options of ``make_initializer(opts['init'], ...)``: ``K`` for hybrid, the
    memory options for memory and auto. ``given`` (the keys the user set) refuses a memory
    option set for an initialization that has no memory."""
    init = normalize_name(str(opts["init"]))
    memory = {kw: opts[key] for key, kw in MEMORY_OPTIONS.items()}
    if init in ("memory", "auto"):
        return memory
    unused = sorted(set(MEMORY_OPTIONS) & (given or set()))
    if unused:
        raise ConfigError(
            f"{', '.join(_flag(k) for k in unused)}: option(s) of the memory initialization, "
            f"but --init is {init!r}; use --init memory (or auto), or drop them"
        )
    return {"K": opts["K"]} if init == "hybrid" else {}
