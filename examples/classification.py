"""Supervised classification with the paper's 5-layer MLP on FashionMNIST: backprop against
predictive coding with forward, average and hybrid(K) neuron initialization.

The setting is the one of the paper's initialization experiments: topologies/mlp5_fashion.yaml
(784 → 4×256 GELU → 10, cross-entropy energy at the output), batches of 300 (stream-aligned,
30 per class, for average/hybrid), SGD on the neurons with γ = 0.05, AdamW on the weights (lr 5e-4,
weight decay 1e-4), T inference steps per weight update. BP is a plain ``torch.nn.Sequential``
that starts from the same weights as the compiled PC network (copied from it) and is trained with
cross-entropy and the same AdamW.

After every epoch each run is evaluated on the test set by a forward pass (``learner.predict``:
forward init is the exact fixed point of a DAG with the output free), and the script records the
test accuracy, the sequential matrix multiplications (SMMs) spent so far (2T per update plus the
initialization's own cost, as counted by pcgraph; BP: 2L − 1 = 9 per update) and the training
wall time. From these it reports the SMMs and seconds needed to first reach ``--target`` test
accuracy. Under --out it writes:

  results.json            {"runs": [...], "summary": [...], "target", "config", "data_source", ...}
  accuracy_curves.png     test accuracy per epoch, one panel per T (mean ± std over seeds)
  accuracy_vs_smm.png     test accuracy against cumulative SMMs

Examples:
  python examples/classification.py                     # embedded subset, a few minutes
  python examples/classification.py --quick             # < 1 minute smoke run
  python examples/classification.py --full --train-size 10000 --seeds 0,1,2
  python examples/classification.py --full --device cuda
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

import pcgraph as pc
from pcgraph.activations import get_activation
from pcgraph.atomic import atomic_write_text
from pcgraph.data import ImageDataset, embedded_dataset, load_dataset
from pcgraph.train import Trainer

TOPOLOGY = Path(__file__).resolve().parent.parent / "topologies" / "mlp5_fashion.yaml"
PC_METHODS = ("forward", "average", "hybrid", "null", "zero", "random")


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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(p, out="runs/classification")
    p.add_argument(
        "--methods",
        default="bp,forward,average,hybrid",
        help=f"comma-separated: bp and/or PC initializations ({', '.join(PC_METHODS)})",
    )
    p.add_argument("--K", type=int, default=2, help="forward depth of the hybrid init")
    p.add_argument("--target", type=float, default=0.80, help="test accuracy to reach")
    p.add_argument(
        "--stream-aligned",
        choices=("auto", "all", "none"),
        default="auto",
        help="stream-aligned batches: auto = only for average/hybrid (pcgraph's Trainer default)",
    )
    args = p.parse_args(argv)
    return finish_args(p, args, quick={"T": "2", "epochs": 2, "train_size": 1500})


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
    if hasattr(args, "methods"):
        args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        unknown = [m for m in args.methods if m != "bp" and m not in PC_METHODS]
        if unknown:
            p.error(f"unknown method(s) {unknown}; valid: bp, {', '.join(PC_METHODS)}")
    if min(args.T) < 0 or args.epochs < 1:
        p.error("T must be ≥ 0 and epochs ≥ 1")
    return args


def load_data(args: argparse.Namespace) -> tuple[ImageDataset, ImageDataset]:
    """Train and test sets: the embedded subset, or the whole dataset with --full; class-balanced
    random subsets of --train-size/--test-size (seeded, the same for every run)."""
    if args.full:
        train, test = load_dataset("fashion-mnist", "train"), load_dataset("fashion-mnist", "test")
    else:
        train, test = embedded_dataset("train"), embedded_dataset("test")
    gen = torch.Generator().manual_seed(1234)
    if args.train_size and args.train_size < len(train):
        train = train.subset(args.train_size, generator=gen)
    if args.test_size and args.test_size < len(test):
        test = test.subset(args.test_size, generator=gen)
    return train, test


# --- the networks ---------------------------------------------------------------------------
class _Act(nn.Module):
    """A pcgraph activation as a module (BP uses exactly the PC network's σ)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name, self.fn = name, get_activation(name).fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return self.name


def bp_model(net: pc.PCNetwork) -> nn.Sequential:
    """The chain ``net`` as a torch ``nn.Sequential`` with a copy of its weights: PC predicts
    μ_i = W σ_j(x_j) + b along each edge j → i, so BP computes h ← W σ_j(h) + b edge by edge."""
    spec = net.spec
    layers: list[nn.Module] = []
    for edge, kernel in zip(spec.edges, net.kernels, strict=True):
        if edge.op != "linear":
            raise ValueError(f"bp_model handles linear chains only, edge {edge.label} is {edge.op}")
        act = spec.node(edge.source).activation
        if act != "identity":
            layers.append(_Act(act))
        weight = kernel.weight.detach()
        linear = nn.Linear(weight.shape[1], weight.shape[0], bias=kernel.bias is not None)
        with torch.no_grad():
            linear.weight.copy_(weight)
            if kernel.bias is not None:
                linear.bias.copy_(kernel.bias.detach())
        layers.append(linear)
    return nn.Sequential(*layers).to(net.device, net.dtype)


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


def io_names(net: pc.PCNetwork) -> tuple[str, str]:
    """(input node, output node) of a classifier graph."""
    return net.spec.names_with_role("input")[0], net.spec.names_with_role("output")[0]


@torch.no_grad()
def pc_accuracy(
    learner: pc.PCLearner, images: torch.Tensor, labels: torch.Tensor, batch_size: int
) -> float:
    """Test accuracy over every test sample (``learner.predict``: a forward sweep on a DAG,
    inference from the initializer with the output free otherwise)."""
    inp, out = io_names(learner.net)
    correct = 0
    for start in range(0, len(images), batch_size):
        pred = learner.predict({inp: images[start : start + batch_size]})[out]
        correct += int((pred.argmax(-1) == labels[start : start + batch_size]).sum())
    return correct / len(images)


@torch.no_grad()
def bp_accuracy(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int
) -> float:
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = model(images[start : start + batch_size])
        correct += int((logits.argmax(-1) == labels[start : start + batch_size]).sum())
    return correct / len(images)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
    topology: Path = TOPOLOGY,
    eval_fn: Any = None,
) -> dict[str, Any]:
    """Train one PC network for ``args.epochs`` epochs; evaluate after every epoch."""
    net = pc.compile(topology, seed=seed, device=args.device)
    learner = make_learner(net, init, T, args, seed)
    aligned = {"auto": None, "all": True, "none": False}[getattr(args, "stream_aligned", "auto")]
    trainer = Trainer(
        learner,
        train,
        None,
        batch_size=args.batch_size,
        epochs=args.epochs,
        seed=seed,
        stream_aligned=aligned,
        progress=False,
    )
    test_x = test.flat().to(net.device, net.dtype)
    test_y = test.labels.to(net.device)
    record: dict[str, Any] = {
        "method": init,
        "T": T,
        "seed": seed,
        "stream_aligned": trainer.stream_aligned,
        "test_accuracy": [],
        "smm_total": [],
        "train_seconds": [],
        "energy_before": [],
        "energy_after": [],
        "smm_per_step": [],
    }
    seconds = 0.0
    for epoch in range(args.epochs):
        before, after = [], []
        _sync(net.device)
        start = time.perf_counter()
        for idx in trainer.epoch_batches(epoch):
            metrics = learner.train_step(trainer.batch_data(train, idx))
            before.append(metrics.energy_before)
            after.append(metrics.energy_after)
            if len(record["smm_per_step"]) < 3:
                record["smm_per_step"].append(metrics.smm)
            last_smm = metrics.smm
            bar.update(1)
        _sync(net.device)
        seconds += time.perf_counter() - start
        acc = (eval_fn or pc_accuracy)(learner, test_x, test_y, args.batch_size)
        record["test_accuracy"].append(acc)
        record["smm_total"].append(learner.smm_total)
        record["train_seconds"].append(seconds)
        record["energy_before"].append(float(torch.stack(before).mean()) / args.batch_size)
        record["energy_after"].append(float(torch.stack(after).mean()) / args.batch_size)
        bar.set_postfix(method=init, T=T, seed=seed, epoch=epoch + 1, acc=f"{acc:.3f}")
    record["smm_per_update"] = last_smm
    record["updates"] = learner.steps
    return record


def run_bp(
    args: argparse.Namespace, seed: int, train: ImageDataset, test: ImageDataset, bar: Any
) -> dict[str, Any]:
    """Backprop from the same initial weights, same optimizer, same batches as PC-forward."""
    net = pc.compile(TOPOLOGY, seed=seed, device=args.device)
    model = bp_model(net)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    learner = make_learner(net, "forward", 1, args, seed)  # only for its Trainer's batching
    aligned = {"auto": None, "all": True, "none": False}[args.stream_aligned]
    trainer = Trainer(
        learner,
        train,
        None,
        batch_size=args.batch_size,
        seed=seed,
        stream_aligned=aligned,
        progress=False,
    )
    smm_update = 2 * len(net.spec.edges) - 1
    train_x = train.flat().to(net.device, net.dtype)
    train_y = train.labels.to(net.device)
    test_x = test.flat().to(net.device, net.dtype)
    test_y = test.labels.to(net.device)
    record: dict[str, Any] = {
        "method": "bp",
        "T": None,
        "seed": seed,
        "stream_aligned": trainer.stream_aligned,
        "test_accuracy": [],
        "smm_total": [],
        "train_seconds": [],
        "train_loss": [],
        "smm_per_step": [smm_update] * 3,
        "smm_per_update": smm_update,
    }
    seconds, steps = 0.0, 0
    for epoch in range(args.epochs):
        losses = []
        _sync(net.device)
        start = time.perf_counter()
        for idx in trainer.epoch_batches(epoch):
            idx = idx.to(net.device)
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(train_x[idx]), train_y[idx])
            loss.backward()
            opt.step()
            losses.append(loss.detach())
            steps += 1
            bar.update(1)
        _sync(net.device)
        seconds += time.perf_counter() - start
        acc = bp_accuracy(model, test_x, test_y, args.batch_size)
        record["test_accuracy"].append(acc)
        record["smm_total"].append(steps * smm_update)
        record["train_seconds"].append(seconds)
        record["train_loss"].append(float(torch.stack(losses).mean()))
        bar.set_postfix(method="bp", seed=seed, epoch=epoch + 1, acc=f"{acc:.3f}")
    record["updates"] = steps
    return record


# --- summaries and figures ------------------------------------------------------------------
def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.pstdev(values) if len(values) > 1 else 0.0


def summarize(runs: list[dict[str, Any]], target: float) -> list[dict[str, Any]]:
    """One row per (method, T): accuracy and cost statistics over seeds."""
    rows = []
    keys = list(dict.fromkeys((r["method"], r["T"]) for r in runs))
    for method, T in keys:
        group = [r for r in runs if r["method"] == method and r["T"] == T]
        final = _mean_std([r["test_accuracy"][-1] for r in group])
        best = _mean_std([max(r["test_accuracy"]) for r in group])
        reached = [r for r in group if r["target_reached"]]
        smm = _mean_std([r["smm_to_target"] for r in reached])
        sec = _mean_std([r["seconds_to_target"] for r in reached])
        rows.append(
            {
                "method": method,
                "T": T,
                "seeds": len(group),
                "final_accuracy_mean": final[0],
                "final_accuracy_std": final[1],
                "best_accuracy_mean": best[0],
                "best_accuracy_std": best[1],
                "smm_per_update": group[0]["smm_per_update"],
                "smm_first_updates": group[0]["smm_per_step"],
                "target": target,
                "seeds_reaching_target": len(reached),
                "smm_to_target_mean": None if not reached else smm[0],
                "seconds_to_target_mean": None if not reached else sec[0],
                "train_seconds_mean": statistics.fmean(r["train_seconds"][-1] for r in group),
            }
        )
    return rows


def print_summary(rows: list[dict[str, Any]], target: float) -> None:
    print(
        f"\n{'method':>8} {'T':>3} {'final acc':>15} {'best acc':>15} {'SMM/upd':>7} "
        f"{'reach':>5} {f'SMMs→{target:.2f}':>11} {f's→{target:.2f}':>8} {'train s':>8}"
    )
    for r in rows:
        smm = "—" if r["smm_to_target_mean"] is None else f"{r['smm_to_target_mean']:.0f}"
        sec = "—" if r["seconds_to_target_mean"] is None else f"{r['seconds_to_target_mean']:.1f}"
        T = "—" if r["T"] is None else str(r["T"])
        print(
            f"{r['method']:>8} {T:>3} "
            f"{r['final_accuracy_mean']:.4f}±{r['final_accuracy_std']:.4f} "
            f"{r['best_accuracy_mean']:.4f}±{r['best_accuracy_std']:.4f} "
            f"{r['smm_per_update']:>7} {r['seeds_reaching_target']:>2}/{r['seeds']:<2} "
            f"{smm:>11} {sec:>8} {r['train_seconds_mean']:8.1f}"
        )


def _curve(group: list[dict[str, Any]], key: str) -> tuple[Any, Any]:
    import numpy as np

    arr = np.array([r[key] for r in group], dtype=float)
    return arr.mean(0), arr.std(0)


def save_figures(runs: list[dict[str, Any]], args: argparse.Namespace, out: Path) -> None:
    import numpy as np
    from matplotlib.figure import Figure

    from pcgraph.viz import save_figure

    methods = list(dict.fromkeys(r["method"] for r in runs))
    colour = {m: f"C{i}" for i, m in enumerate(methods)}
    Ts = args.T
    fig = Figure(figsize=(3.6 * len(Ts), 3.2), layout="constrained")
    axes = fig.subplots(1, len(Ts), squeeze=False, sharey=True)[0]
    for ax, T in zip(axes, Ts, strict=True):
        for m in methods:
            group = [r for r in runs if r["method"] == m and (r["T"] == T or m == "bp")]
            if not group:
                continue
            mean, std = _curve(group, "test_accuracy")
            x = np.arange(1, len(mean) + 1)
            ls = "--" if m == "bp" else "-"
            ax.plot(x, mean, ls, color=colour[m], marker=".", ms=4, label=m)
            ax.fill_between(x, mean - std, mean + std, color=colour[m], alpha=0.15)
        ax.set_title(f"T = {T}", fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy")
    axes[0].legend(fontsize=8)
    save_figure(fig, out / "accuracy_curves.png", dpi=90)

    fig = Figure(figsize=(5.5, 3.6), layout="constrained")
    ax = fig.subplots()
    styles = dict(zip(Ts, ["-", "--", ":", "-.", (0, (1, 3))] * 3, strict=False))
    for m in methods:
        for T in [None] if m == "bp" else Ts:
            group = [r for r in runs if r["method"] == m and r["T"] == T]
            if not group:
                continue
            acc, _ = _curve(group, "test_accuracy")
            smm, _ = _curve(group, "smm_total")
            label = m if T is None else f"{m} T={T}"
            ls = "-" if T is None else styles[T]
            lw = 2.2 if m == "bp" else 1.4
            ax.plot(smm, acc, linestyle=ls, lw=lw, color=colour[m], marker=".", ms=3, label=label)
    ax.axhline(args.target, color="grey", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("sequential matmuls (cumulative)")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    save_figure(fig, out / "accuracy_vs_smm.png", dpi=90)


def start_run(args: argparse.Namespace) -> tuple[Path, ImageDataset, ImageDataset] | None:
    """The shared prologue of the examples: device check, threads, output folder, data.

    Returns None (after printing why) when --device cuda is asked for without CUDA."""
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda but CUDA is not available", file=sys.stderr)
        return None
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train, test = load_data(args)
    print(f"data: {len(train)} train / {len(test)} test images from {train.source}")
    return out, train, test


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
    }
    atomic_write_text(out / "results.json", json.dumps(payload, indent=2))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started_run = start_run(args)
    if started_run is None:
        return 2
    out, train, test = started_run
    spec = pc.GraphSpec.from_yaml(TOPOLOGY)
    per_epoch = len(train) // args.batch_size
    n_runs = sum(1 if m == "bp" else len(args.T) for m in args.methods) * len(args.seeds)
    runs: list[dict[str, Any]] = []
    started = time.perf_counter()
    with tqdm(
        total=n_runs * args.epochs * per_epoch,
        desc="training",
        disable=args.no_progress,
        file=sys.stdout,
    ) as bar:
        for seed in args.seeds:
            for method in args.methods:
                if method == "bp":
                    runs.append(run_bp(args, seed, train, test, bar))
                    continue
                for T in args.T:
                    runs.append(run_pc(args, method, T, seed, train, test, bar))
    for r in runs:
        r |= first_reaching(r, args.target)
    summary = summarize(runs, args.target)
    print_summary(summary, args.target)
    write_results(
        out,
        args,
        train,
        test,
        started,
        runs=runs,
        summary=summary,
        target=args.target,
        bp_smm_per_update=2 * len(spec.edges) - 1,
    )
    save_figures(runs, args, out)
    print(f"results and figures written to {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
