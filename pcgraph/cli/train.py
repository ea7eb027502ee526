"""``pcgraph train``: train a topology from YAML. A run can be configured by ``--config run.yaml``
(keys = the long option names, with ``-`` or ``_``); options given on the command line override
the file. ``pcgraph evaluate`` and ``reconstruct`` (:mod:`pcgraph.cli.evaluate`) restore a run
with the helpers here."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pcgraph.cli.command import add_topology_command
from pcgraph.cli.options import (
    PAPER_SETTING,
    PAPER_SOURCE,
    TRAIN_DEFAULTS,
    init_options,
    read_options,
)
from pcgraph.cli.runinfo import environment
from pcgraph.cli.validate import check_output_dir, check_train
from pcgraph.errors import ConfigError
from pcgraph.solvers import SOLVERS

__all__ = ["TRAIN_DEFAULTS", "add_parser", "build_learner", "load_data", "run_train"]

SUMMARY = "train a topology on an image dataset"
DESCRIPTION = (
    "Train FILE with predictive coding and write DIR/history.json, DIR/checkpoint.pt, "
    "DIR/options.json (the options, versions, commit and device), DIR/history.png and "
    f"DIR/graph.png. The defaults of batch size, lr, weight decay and γ are {PAPER_SOURCE}."
)


def _paper(key: str) -> str:
    return f"(default {PAPER_SETTING[key]}, {PAPER_SOURCE})"


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
    p.add_argument("--T", type=int, help="inference steps per update (default 8; at most 100000)")
    p.add_argument("--epochs", type=int, help="passes over the training images (default 1)")
    p.add_argument(
        "--batch-size", type=int, help="training images per weight update " + _paper("batch_size")
    )
    p.add_argument("--lr", type=float, help="AdamW learning rate of the weights " + _paper("lr"))
    p.add_argument(
        "--weight-decay", type=float, help="AdamW weight decay " + _paper("weight_decay")
    )
    p.add_argument(
        "--lr-neurons", type=float, help="γ, the neuron learning rate " + _paper("lr_neurons")
    )
    _add_engine_flags(p)
    p.add_argument("--train-size", type=int, help="use this many training images")
    p.add_argument("--test-size", type=int, help="use this many test images")
    p.add_argument("--task", help="auto | classification | generation")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument(
        "--seed",
        type=int,
        help="seeds the weights, the data subsets, the batch order and the learner's random "
        "draws (random init, dropout) (default 0)",
    )
    p.add_argument("--out", help="output directory (default runs/train)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument(
        "--no-progress",
        dest="progress",
        action="store_const",
        const=False,
        help="no progress bar (the per-epoch lines are still printed)",
    )


def _add_engine_flags(p: argparse.ArgumentParser) -> None:
    """The options of PCLearner and of the memory initialization (MemoryInit)."""
    p.add_argument(
        "--neuron-optimizer",
        help=f"the neuron solver: {' | '.join(SOLVERS.names())} (default sgd), or one a --plugin "
        "registers",
    )
    p.add_argument(
        "--schedule",
        help="standard (T inference steps, then one weight update) | incremental (iPC: a "
        "weight update after every inference step) (default standard)",
    )
    p.add_argument(
        "--algorithm",
        help="pc (inference descends the energy in the states) | epc (error-based PC: in the "
        "prediction errors, through the forward sweep; DAGs only) (default pc)",
    )
    p.add_argument(
        "--tol",
        type=float,
        help="stop inference once a step changes the energy by at most tol × E (default: run "
        "all T steps)",
    )
    p.add_argument(
        "--step-rule",
        help="fixed | backtrack (halve γ until the energy does not rise; sgd only) (default fixed)",
    )
    p.add_argument(
        "--cuda-graph",
        action="store_const",
        const=True,
        help="replay inference from a captured CUDA graph (needs --device cuda)",
    )
    memory = "memory init (and auto where it uses memory)"
    p.add_argument("--patterns", type=int, help=f"{memory}: stored patterns (default 512)")
    p.add_argument("--heads", type=int, help=f"{memory}: attention heads (default 4)")
    p.add_argument("--embed-dim", type=int, help=f"{memory}: embedding width (default 128)")
    p.add_argument(
        "--beta", type=float, help=f"{memory}: inverse temperature β (default 1/√(embed/heads))"
    )
    p.add_argument("--mem-lr", type=float, help=f"{memory}: its learning rate (default 0.001)")
    p.add_argument("--mem-steps", type=int, help=f"{memory}: fitting steps per batch (default 1)")
    p.add_argument(
        "--mem-loss", help=f"{memory}: energy | sweep | target, what it fits (default energy)"
    )
    p.add_argument(
        "--mem-linear",
        action="store_const",
        const=True,
        help=f"{memory}: add the linear path o W beside the retrieval",
    )


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
    learner = pc.PCLearner(
        net,
        init=make_initializer(opts["init"], **init_options(opts)),
        T=opts["T"],
        lr_neurons=opts["lr_neurons"],
        neuron_optimizer=opts["neuron_optimizer"],
        schedule=opts["schedule"],
        algorithm=opts.get("algorithm", "pc"),
        tol=opts["tol"],
        step_rule=opts["step_rule"],
        cuda_graph=opts["cuda_graph"],
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

    opts, given = read_options(args)
    check_train(opts)  # numbers, choices, device: before any work
    init_options(opts, given)  # memory options only where there is a memory
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
    record = opts | {"environment": environment(opts["device"])}
    atomic_write_text(out / "options.json", json.dumps(record, indent=2, default=str))
    plot_history(history.to_dict(), path=out / "history.png")
    draw_graph(spec, clamp=sorted(clamp), path=out / "graph.png")
    print(f"wrote {out}/history.json, checkpoint.pt, history.png, graph.png")
    if dist is not None:
        torch.distributed.destroy_process_group()
    return 0
