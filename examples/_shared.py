"""Helpers the examples share: their common options and presets, the run prologue (device,
threads, output folder, data), one PC training run through ``Trainer.fit`` with an
``EpochRecorder``, test accuracy, and the results writer.

The examples import it as ``_shared`` (Python puts a script's own folder on ``sys.path``); the
benchmarks that reuse a training run import it from here too. The backprop baseline is the
library's :class:`pcgraph.BackpropTwin`.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

import pcgraph as pc
from pcgraph.atomic import atomic_write_text
from pcgraph.data import ImageDataset, embedded_dataset, load_dataset
from pcgraph.train import EpochRecorder, Trainer

__all__ = [
    "accuracy",
    "accuracy_stats",
    "add_batching_args",
    "add_common_args",
    "comma_choices",
    "example_parser",
    "finish_args",
    "first_reaching",
    "io_names",
    "load_data",
    "make_learner",
    "mean_std",
    "run_grid",
    "run_groups",
    "run_pc",
    "start_run",
    "sync",
    "write_results",
]


def example_parser(doc: str | None, *, out: str) -> argparse.ArgumentParser:
    """An example's argument parser: its docstring as the help text, and the common options."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(parser, out=out)
    return parser


def comma_choices(
    parser: argparse.ArgumentParser, text: str, valid: tuple[str, ...], what: str
) -> list[str]:
    """The items of a comma-separated option, each one of ``valid`` (else a usage error)."""
    items = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [i for i in items if i not in valid]
    if unknown:
        parser.error(f"unknown {what}(s) {unknown}; valid: {', '.join(valid)}")
    return items


def add_common_args(parser: argparse.ArgumentParser, *, out: str) -> None:
    """The options the classification-style examples share (data, budget, optimizers)."""
    parser.add_argument("--quick", action="store_true", help="< 1-minute smoke run (CI runs this)")
    parser.add_argument(
        "--full",
        action="store_true",
        help="the whole dataset (needs the real files; see pcgraph.data); "
        "--train-size/--test-size then take subsets of it",
    )
    parser.add_argument("--out", default=out, help="output directory")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--T", default=None, help="comma-separated inference steps per update")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seeds", default=None, help="comma-separated seeds")
    parser.add_argument("--train-size", type=int, default=None, help="training images used")
    parser.add_argument("--test-size", type=int, default=None, help="test images used")
    parser.add_argument("--batch-size", type=int, default=300)
    parser.add_argument("--lr", type=float, default=5e-4, help="AdamW learning rate of the weights")
    parser.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay")
    parser.add_argument("--lr-neurons", type=float, default=0.05, help="γ, SGD rate of the neurons")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0: torch's default)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def finish_args(
    p: argparse.ArgumentParser, args: argparse.Namespace, *, quick: dict[str, Any]
) -> argparse.Namespace:
    """Fill the presets (quick / default / full) and split the comma lists."""
    if args.quick and args.full:
        p.error("--quick and --full exclude each other")
    preset: dict[str, Any] = {"T": "2,4,8", "epochs": 16, "seeds": "0"}
    if args.quick:
        preset |= {"seeds": "0", "test_size": 500} | quick
    for key, value in preset.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    args.T = [int(t) for t in str(args.T).split(",")]
    args.seeds = [int(s) for s in str(args.seeds).split(",")]
    if min(args.T) < 0 or args.epochs < 1:
        p.error("T must be ≥ 0 and epochs ≥ 1")
    return args


def load_data(args: argparse.Namespace, *, seed: int = 1234) -> tuple[ImageDataset, ImageDataset]:
    """Train and test sets: the embedded subset, or the whole dataset with --full; class-balanced
    random subsets of --train-size/--test-size (drawn with ``seed``, the same for every run)."""
    if args.full:
        train, test = load_dataset("fashion-mnist", "train"), load_dataset("fashion-mnist", "test")
    else:
        train, test = embedded_dataset("train"), embedded_dataset("test")
    gen = torch.Generator().manual_seed(seed)
    if args.train_size and args.train_size < len(train):
        train = train.subset(args.train_size, generator=gen)
    if args.test_size and args.test_size < len(test):
        test = test.subset(args.test_size, generator=gen)
    return train, test


def make_learner(
    net: pc.PCNetwork, init: str, T: int, args: argparse.Namespace, seed: int
) -> pc.PCLearner:
    """A PC learner with the paper's optimizers (SGD neurons, AdamW weights)."""
    return pc.PCLearner(
        net,
        init=init,
        T=T,
        lr_neurons=args.lr_neurons,
        optimizer=torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.weight_decay),
        init_options={"K": args.K} if init == "hybrid" else None,
        generator=torch.Generator(device=net.device).manual_seed(seed),
    )


@torch.no_grad()
def io_names(net: pc.PCNetwork) -> tuple[str, str]:
    """(input node, output node) of a classifier graph."""
    return net.spec.names_with_role("input")[0], net.spec.names_with_role("output")[0]


@torch.no_grad()
def accuracy(
    learner: pc.PCLearner,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    *,
    T: int | None = None,
) -> float:
    """Test accuracy over every test sample by ``learner.predict``: a forward sweep on a DAG,
    inference (T steps, default the learner's) with the output free otherwise."""
    inp, out = io_names(learner.net)
    correct = 0
    for start in range(0, len(images), batch_size):
        pred = learner.predict({inp: images[start : start + batch_size]}, T=T)[out]
        correct += int((pred.argmax(-1) == labels[start : start + batch_size]).sum())
    return correct / len(images)


def first_reaching(record: dict[str, Any], target: float) -> dict[str, Any]:
    """SMMs, seconds and epochs when the test accuracy first reached ``target`` (None if never)."""
    for i, acc in enumerate(record["test_accuracy"]):
        if acc >= target:
            return {
                "target_reached": True,
                "epochs_to_target": i + 1,
                "smm_to_target": record["smm_total"][i],
                "seconds_to_target": record["train_seconds"][i],
            }
    return {
        "target_reached": False,
        "epochs_to_target": None,
        "smm_to_target": None,
        "seconds_to_target": None,
    }


def run_pc(
    args: argparse.Namespace,
    init: str,
    T: int,
    seed: int,
    train: ImageDataset,
    test: ImageDataset,
    bar: Any,
    *,
    topology: Path,
    eval_T: int | None = None,
) -> dict[str, Any]:
    """Train one PC network for ``args.epochs`` epochs with ``Trainer.fit``; the test accuracy
    (inference with ``eval_T`` steps where a forward pass does not exist) is measured after
    every epoch, off the training clock."""
    net = pc.compile(topology, seed=seed, device=args.device)
    learner = make_learner(net, init, T, args, seed)
    test_x = test.flat().to(net.device, net.dtype)
    test_y = test.labels.to(net.device)

    def evaluate(learner: pc.PCLearner) -> dict[str, float]:
        acc = accuracy(learner, test_x, test_y, args.batch_size, T=eval_T)
        bar.set_postfix(method=init, T=T, seed=seed, acc=f"{acc:.3f}")
        return {"test_accuracy": acc}

    recorder = EpochRecorder(evaluate, on_batch=lambda _: bar.update(1))
    aligned = {"auto": None, "all": True, "none": False}[getattr(args, "stream_aligned", "auto")]
    trainer = Trainer(
        learner,
        train,
        None,
        batch_size=args.batch_size,
        epochs=args.epochs,
        seed=seed,
        stream_aligned=aligned,
        callbacks=[recorder],
        progress=False,
    )
    trainer.fit()
    return {
        "method": init,
        "T": T,
        "seed": seed,
        "stream_aligned": trainer.stream_aligned,
        **recorder.record,
        "smm_per_update": recorder.last_metrics.smm if recorder.last_metrics else 0,
        "updates": learner.steps,
    }


def run_groups(runs: list[dict[str, Any]]) -> Iterator[tuple[str, Any, list[dict[str, Any]]]]:
    """(method, T, the runs of every seed) for each (method, T), in the order first run."""
    for method, T in dict.fromkeys((r["method"], r["T"]) for r in runs):
        yield method, T, [r for r in runs if r["method"] == method and r["T"] == T]


def accuracy_stats(group: list[dict[str, Any]]) -> dict[str, Any]:
    """Seeds, and mean and std over them of the best and the final test accuracy."""
    best = mean_std([max(r["test_accuracy"]) for r in group])
    final = mean_std([r["test_accuracy"][-1] for r in group])
    return {
        "seeds": len(group),
        "best_accuracy_mean": best[0],
        "best_accuracy_std": best[1],
        "final_accuracy_mean": final[0],
        "final_accuracy_std": final[1],
        "smm_per_update": group[0]["smm_per_update"],
    }


def add_batching_args(parser: argparse.ArgumentParser) -> None:
    """--K (hybrid's forward depth) and --stream-aligned, for the examples that run
    average/hybrid."""
    parser.add_argument("--K", type=int, default=2, help="forward depth of the hybrid init")
    parser.add_argument(
        "--stream-aligned",
        choices=("auto", "all", "none"),
        default="auto",
        help="stream-aligned batches: auto = only for average/hybrid (pcgraph's Trainer default)",
    )


def sync(device: torch.device) -> None:
    """Wait for queued device work (CUDA), so that wall times are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_grid(
    args: argparse.Namespace,
    train: ImageDataset,
    test: ImageDataset,
    *,
    topology: Path,
    inits: list[str],
    eval_T: int | None = None,
) -> list[dict[str, Any]]:
    """:func:`run_pc` for every seed × initialization × T of the command line, under one
    progress bar; each run records the T its accuracy was measured with (``T_eval``)."""
    steps = len(inits) * len(args.T) * len(args.seeds) * args.epochs
    steps *= len(train) // args.batch_size
    runs = []
    with tqdm(total=steps, desc="training", disable=args.no_progress, file=sys.stdout) as bar:
        for seed in args.seeds:
            for init in inits:
                for T in args.T:
                    run = run_pc(
                        args, init, T, seed, train, test, bar, topology=topology, eval_T=eval_T
                    )
                    runs.append(run | {"T_eval": T if eval_T is None else eval_T})
    return runs


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and population standard deviation (0 for one value, NaN for none)."""
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.pstdev(values) if len(values) > 1 else 0.0


def start_run(args: argparse.Namespace) -> tuple[Path, ImageDataset, ImageDataset]:
    """The shared prologue of the examples: device check, threads, output folder, data.

    Exits with status 2 (after saying why) when --device cuda is asked for without CUDA."""
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda but CUDA is not available", file=sys.stderr)
        raise SystemExit(2)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train, test = load_data(args)
    print(f"data: {len(train)} train / {len(test)} test images from {train.source}")
    return out, train, test


def machine() -> dict[str, Any]:
    """What the numbers were measured on: the CPU (its model and vector width: float32 results
    move with the matrix and activation kernels it runs), threads, torch and the device."""
    import platform

    name, flags = platform.processor() or platform.machine(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name") and name in ("", platform.machine()):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = line
    except OSError:
        pass
    vector = next((v for v in ("avx512f", "avx2", "avx") if f" {v}" in flags), "")
    return {
        "cpu": name,
        "vector": vector or "unknown",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def machine_line() -> str:
    """``machine()`` as one printed line."""
    m = machine()
    return f"machine: {m['cpu']} ({m['vector']}), {m['threads']} threads, torch {m['torch']}"


def write_results(
    out: Path,
    args: argparse.Namespace,
    train: ImageDataset,
    test: ImageDataset,
    started: float,
    **fields: Any,
) -> None:
    """results.json (atomically): the example's own fields plus data, wall time and config."""
    payload = {
        **fields,
        "n_train": len(train),
        "n_test": len(test),
        "data_source": train.source,
        "wall_seconds": time.perf_counter() - started,
        "config": dict(vars(args)),
        "machine": machine(),
    }
    atomic_write_text(out / "results.json", json.dumps(payload, indent=2))
