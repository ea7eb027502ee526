"""Supervised classification with the paper's 5-layer MLP on FashionMNIST: backprop against
predictive coding with forward, average and hybrid(K) neuron initialization.

The setting is the one of the paper's initialization experiments: topologies/mlp5_fashion.yaml
(784 → 4×256 GELU → 10, cross-entropy energy at the output), batches of 300 (stream-aligned,
30 per class, for average/hybrid), SGD on the neurons with γ = 0.05, AdamW on the weights (lr 5e-4,
weight decay 1e-4), T inference steps per weight update. BP is ``pcgraph.BackpropTwin``, the
feed-forward network of the same graph that starts from a copy of the compiled PC network's
weights, trained with cross-entropy and the same AdamW.

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
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import _shared as shared
import torch
from torch import nn
from tqdm import tqdm

import pcgraph as pc
from pcgraph.data import ImageDataset
from pcgraph.train import Trainer

TOPOLOGY = Path(__file__).resolve().parent.parent / "topologies" / "mlp5_fashion.yaml"
PC_METHODS = ("forward", "average", "hybrid", "null", "zero", "random")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = shared.example_parser(__doc__, out="runs/classification")
    p.add_argument(
        "--methods",
        default="bp,forward,average,hybrid",
        help=f"comma-separated: bp and/or PC initializations ({', '.join(PC_METHODS)})",
    )
    p.add_argument("--target", type=float, default=0.80, help="test accuracy to reach")
    shared.add_batching_args(p)
    args = shared.finish_args(
        p, p.parse_args(argv), quick={"T": "2", "epochs": 2, "train_size": 1500}
    )
    args.methods = shared.comma_choices(p, args.methods, ("bp", *PC_METHODS), "method")
    return args


@torch.no_grad()
def bp_accuracy(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int
) -> float:
    """Test accuracy of the backprop twin (argmax of the output's logits)."""
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = model(images[start : start + batch_size])
        correct += int((logits.argmax(-1) == labels[start : start + batch_size]).sum())
    return correct / len(images)


def run_bp(
    args: argparse.Namespace, seed: int, train: ImageDataset, test: ImageDataset, bar: Any
) -> dict[str, Any]:
    """Backprop from the same initial weights, same optimizer, same batches as PC-forward."""
    net = pc.compile(TOPOLOGY, seed=seed, device=args.device)
    model = pc.BackpropTwin(net)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    learner = shared.make_learner(net, "forward", 1, args, seed)  # only for its Trainer's batching
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
        shared.sync(net.device)
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
        shared.sync(net.device)
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
def summarize(runs: list[dict[str, Any]], target: float) -> list[dict[str, Any]]:
    """One row per (method, T): accuracy and cost statistics over seeds."""
    rows = []
    for method, T, group in shared.run_groups(runs):
        reached = [r for r in group if r["target_reached"]]
        smm = shared.mean_std([r["smm_to_target"] for r in reached])
        sec = shared.mean_std([r["seconds_to_target"] for r in reached])
        rows.append(
            {
                "method": method,
                "T": T,
                **shared.accuracy_stats(group),
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
        ax.xaxis.get_major_locator().set_params(integer=True)  # whole epochs
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy")
    fig.legend(*axes[0].get_legend_handles_labels(), fontsize=8, loc="outside right upper")
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
    ax.legend(fontsize=7, ncol=1, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # off the curves
    save_figure(fig, out / "accuracy_vs_smm.png", dpi=90)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out, train, test = shared.start_run(args)
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
                    runs.append(
                        shared.run_pc(args, method, T, seed, train, test, bar, topology=TOPOLOGY)
                    )
    for r in runs:
        r |= shared.first_reaching(r, args.target)
    summary = summarize(runs, args.target)
    print_summary(summary, args.target)
    extra = {"target": args.target, "bp_smm_per_update": 2 * len(spec.edges) - 1}
    shared.write_results(out, args, train, test, started, runs=runs, summary=summary, **extra)
    save_figures(runs, args, out)
    print(f"results and figures written to {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
