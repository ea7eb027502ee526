"""``pcgraph train``: train a topology from YAML. A run can be configured by ``--config run.yaml``
(keys = the long option names, with ``-`` or ``_``); options given on the command line override
the file. ``pcgraph evaluate`` and ``reconstruct`` (:mod:`pcgraph.cli.evaluate`) restore a run
with the helpers here."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pcgraph.cli.command import add_topology_command
from pcgraph.cli.validate import check_output_dir, check_train
from pcgraph.errors import ConfigError, SpecError
from pcgraph.solvers import SOLVERS
from pcgraph.yamlio import bool_hint, load_yaml

if TYPE_CHECKING:
    pass

__all__ = ["TRAIN_DEFAULTS", "add_parser", "build_learner", "load_data", "run_train"]

TRAIN_DEFAULTS: dict[str, Any] = {
    "data": "fashion-mnist",
    "init": "auto",
    "T": 8,
    "epochs": 1,
    "batch_size": 100,
    "lr": 1e-3,
    "lr_neurons": 0.1,
    "weight_decay": 0.0,
    "neuron_optimizer": "sgd",
    "train_size": None,
    "test_size": None,
    "device": "cpu",
    "seed": 0,
    "out": "runs/train",
    "task": "auto",
    "embedded": False,
    "K": 2,
    "progress": True,
    "data_root": None,
    "log_dir": None,
}


SUMMARY = "train a topology on an image dataset"
DESCRIPTION = (
    "Train FILE with predictive coding and write DIR/history.json, "
    "DIR/checkpoint.pt, DIR/history.png and DIR/graph.png."
)


def add_parser(sub: Any) -> None:
    """Register ``train``."""
    p = add_topology_command(sub, "train", run_train, SUMMARY, DESCRIPTION)
    p.add_argument("--config", help="a YAML file of options (CLI options override it)")
    p.add_argument(
        "--data", help="fashion-mnist | mnist | kmnist | cifar10 (default fashion-mnist)"
    )
    p.add_argument(
        "--data-root",
        help="the folder that holds the dataset's files (cifar10: cifar-10-batches-py; nothing "
        "is downloaded)",
    )
    p.add_argument(
        "--log-dir",
        help="write steps/epochs as CSV and JSON lines there, and TensorBoard events when the "
        "tensorboard package is installed",
    )
    p.add_argument(
        "--embedded",
        action="store_const",
        const=True,
        help="use the embedded FashionMNIST subset even if the full set is installed",
    )
    p.add_argument("--init", help="initialization: auto, forward, hybrid, average, memory, …")
    p.add_argument("--K", type=int, help="hybrid: forward depth K (default 2)")
    p.add_argument("--T", type=int, help="inference steps per update (default 8)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="AdamW learning rate of the weights")
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--lr-neurons", type=float, help="γ, the neuron learning rate")
    p.add_argument(
        "--neuron-optimizer",
        help=f"the neuron solver: {' | '.join(SOLVERS.names())} (default sgd), or one a --plugin "
        "registers",
    )
    p.add_argument("--train-size", type=int, help="use this many training images")
    p.add_argument("--test-size", type=int, help="use this many test images")
    p.add_argument("--task", help="auto | classification | generation")
    p.add_argument("--device")
    p.add_argument("--seed", type=int)
    p.add_argument("--out", help="output directory (default runs/train)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--no-progress", dest="progress", action="store_const", const=False)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    opts = dict(TRAIN_DEFAULTS)
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise SpecError(f"--config {path}: no such file")
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise SpecError(f"--config {path}: cannot be read ({exc.strerror})") from None
        loaded = load_yaml(raw, f"--config {path}") or {}
        if not isinstance(loaded, dict):
            raise SpecError(f"--config {path}: expected a mapping of options, e.g. 'epochs: 2'")
        for key, value in loaded.items():
            norm = str(key).replace("-", "_")
            if norm not in TRAIN_DEFAULTS:
                raise SpecError(
                    f"--config {path}: unknown option {key!r}; valid: {', '.join(TRAIN_DEFAULTS)}"
                )
            opts[norm] = _config_value(path, norm, value)
    for key in TRAIN_DEFAULTS:
        value = getattr(args, key, None)
        if value is not None:
            opts[key] = value
    return opts


_OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "train_size": (int,),
    "test_size": (int,),
}


def _config_value(path: Path, key: str, value: Any) -> Any:
    """A --config value of the option's type (ints for ints, numbers for floats, …)."""
    default = TRAIN_DEFAULTS[key]
    kinds = _OPTION_TYPES.get(key) or (
        (int, float) if isinstance(default, float) else (type(default),)
    )
    ok = isinstance(value, kinds) and (isinstance(default, bool) or not isinstance(value, bool))
    if value is None and default is None:
        ok = True
    if not ok:
        want = " or ".join(k.__name__ for k in kinds)
        raise SpecError(
            f"--config {path}: option {key!r} must be {want}, got {value!r}"
            f"{bool_hint(value) if isinstance(default, str) else ''}; e.g. {key}: {default!r}"
        )
    return float(value) if isinstance(default, float) else value


def load_data(
    name: str,
    *,
    embedded: bool,
    train_size: int | None,
    test_size: int | None,
    seed: int,
    root: str | None = None,
) -> tuple[Any, Any]:
    import torch  # the CLI starts without torch (pcgraph check does not need it)

    from pcgraph.data import embedded_dataset, load_cifar10, load_dataset

    if embedded:
        train, test = embedded_dataset("train"), embedded_dataset("test")
    elif name == "cifar10":
        assert root is not None  # check_train requires it
        train, test = load_cifar10(root, "train"), load_cifar10(root, "test")
    else:
        train, test = load_dataset(name, "train", root=root), load_dataset(name, "test", root=root)
    gen = torch.Generator().manual_seed(seed)
    if train_size and train_size < len(train):
        train = train.subset(train_size, generator=gen)
    if test_size and test_size < len(test):
        test = test.subset(test_size, generator=gen)
    return train, test


def build_learner(spec: Any, opts: dict[str, Any], dist: Any = None) -> Any:
    import torch  # the CLI starts without torch (pcgraph check does not need it)

    import pcgraph as pc
    from pcgraph.init import make_initializer

    net = pc.compile(spec, seed=opts["seed"], device=opts["device"])
    init_opts = {"K": opts["K"]} if opts["init"] == "hybrid" else {}
    learner = pc.PCLearner(
        net,
        init=make_initializer(opts["init"], **init_opts),
        T=opts["T"],
        lr_neurons=opts["lr_neurons"],
        neuron_optimizer=opts["neuron_optimizer"],
        optimizer=torch.optim.AdamW(
            net.parameters(), lr=opts["lr"], weight_decay=opts["weight_decay"]
        ),
        clamp="train" if spec.names_with_role("input") else "generate",
        generator=torch.Generator(device=opts["device"]).manual_seed(opts["seed"]),
        dist=dist,
    )
    return learner


def _loggers(log_dir: str | None) -> list[Any]:
    """CSV and JSON-lines loggers in ``log_dir``, and TensorBoard's where it is installed."""
    if log_dir is None:
        return []
    from pcgraph.errors import ConfigError as _ConfigError
    from pcgraph.train import CSVLogger, JSONLinesLogger, TensorBoardLogger

    loggers: list[Any] = [CSVLogger(log_dir), JSONLinesLogger(log_dir)]
    try:
        loggers.append(TensorBoardLogger(log_dir))
    except _ConfigError as exc:
        print(f"--log-dir: CSV and JSON lines only ({exc})", file=sys.stderr)
    return loggers


def run_train(args: argparse.Namespace) -> int:
    """Execute ``pcgraph train``."""
    import torch  # the CLI starts without torch (pcgraph check does not need it)

    from pcgraph.analysis import check_init, resolve_clamp
    from pcgraph.atomic import atomic_write_text
    from pcgraph.distributed import init_from_env
    from pcgraph.schema import GraphSpec
    from pcgraph.train import PrintCallback, Trainer
    from pcgraph.viz import draw_graph, plot_history

    opts = _options(args)
    check_train(opts)  # numbers, choices, device: before any work
    spec = GraphSpec.from_yaml(args.file)
    clamp = resolve_clamp(spec, "train" if spec.names_with_role("input") else "generate")
    opts["init"] = check_init(spec, clamp, opts["init"])
    out = Path(opts["out"])
    check_output_dir(out)  # a run must not fail at its end for want of a place to write
    if opts["log_dir"] is not None:
        check_output_dir(Path(opts["log_dir"]), "--log-dir")
    if args.resume and not (out / "checkpoint.pt").is_file():
        raise ConfigError(f"--resume: {out / 'checkpoint.pt'} does not exist; train without it")
    train, test = load_data(
        opts["data"],
        embedded=opts["embedded"],
        train_size=opts["train_size"],
        test_size=opts["test_size"],
        seed=opts["seed"],
        root=opts["data_root"],
    )
    dist = init_from_env(device=opts["device"])  # under torchrun: one rank of a data-parallel job
    if dist is not None:
        opts["device"] = str(dist.device)
    learner = build_learner(spec, opts, dist)
    trainer = Trainer(
        learner,
        train,
        test,
        task=opts["task"],
        batch_size=opts["batch_size"],
        epochs=opts["epochs"],
        seed=opts["seed"],
        progress=opts["progress"],
        callbacks=[PrintCallback(), *_loggers(opts["log_dir"])],
        checkpoint=out / "checkpoint.pt",
    )
    if args.resume:
        trainer.load(out / "checkpoint.pt")
    if trainer.is_main:
        ranks = f" on {dist.world_size} ranks" if dist is not None else ""
        print(
            f"training {spec.name} ({trainer.task}) with init {opts['init']}, T={opts['T']}, "
            f"on {len(train)} images from {train.source}{ranks}"
        )
    history = trainer.fit()
    if dist is not None:  # every rank finishes training before any tears down the group
        dist.barrier()
        if not dist.is_main:
            torch.distributed.destroy_process_group()
            return 0  # rank 0 writes the files
    out.mkdir(parents=True, exist_ok=True)
    history.save(out / "history.json")
    atomic_write_text(out / "options.json", json.dumps(opts, indent=2, default=str))
    plot_history(history.to_dict(), path=out / "history.png")
    draw_graph(spec, clamp=sorted(clamp), path=out / "graph.png")
    print(f"wrote {out}/history.json, checkpoint.pt, history.png, graph.png")
    if dist is not None:
        torch.distributed.destroy_process_group()
    return 0
