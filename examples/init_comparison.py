"""The paper's Fig. 2: test accuracy of the 5-layer MLP on FashionMNIST against the number of
inference steps T, for every neuron initialization — random, zero, null, forward, average and
hybrid(K=2).

Same setting as examples/classification.py (batch 300, γ = 0.05, AdamW lr 5e-4 / wd 1e-4;
stream-aligned batches for average/hybrid), and the same evaluation: a forward pass after every
epoch. The paper's reading of Fig. 2: forward is the best of the classical initializations at
small T, null beats random and zero, and all of them meet only at large T. Under --out it writes:

  results.json           {"runs": [...], "summary": [{"init", "T", "best_accuracy_mean", ...}], ...}
  accuracy_vs_T.png      best and final test accuracy against T, one line per init (mean ± std)

Examples:
  python examples/init_comparison.py                    # embedded subset, a few minutes
  python examples/init_comparison.py --quick            # < 1 minute smoke run
  python examples/init_comparison.py --full --train-size 10000 --T 1,2,4,8,16 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import _shared as shared

TOPOLOGY = Path(__file__).resolve().parent.parent / "topologies" / "mlp5_fashion.yaml"
INITS = ("random", "zero", "null", "forward", "average", "hybrid")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = shared.example_parser(__doc__, out="runs/init_comparison")
    p.add_argument("--inits", default=",".join(INITS), help="comma-separated initializations")
    shared.add_batching_args(p)
    args = p.parse_args(argv)
    if args.epochs is None:
        args.epochs = 1 if args.quick else 8
    if args.T is None:
        args.T = "1,4" if args.quick else "1,2,4,8"
    args = shared.finish_args(p, args, quick={"train_size": 1500})
    args.inits = shared.comma_choices(p, args.inits, INITS, "init")
    return args


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for init, T, group in shared.run_groups(runs):
        stats = shared.accuracy_stats(group)
        rows.append({"init": init, "T": T, **stats, "smm_total": group[0]["smm_total"][-1]})
    return rows


def print_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print("\nbest test accuracy (mean ± std over seeds; rows: init, columns: T)")
    print(f"{'init':>8} " + " ".join(f"{f'T={t}':>15}" for t in args.T))
    for init in args.inits:
        cells = {r["T"]: r for r in rows if r["init"] == init}
        print(
            f"{init:>8} "
            + " ".join(
                f"{cells[t]['best_accuracy_mean']:.4f}±{cells[t]['best_accuracy_std']:.4f}"
                for t in args.T
            )
        )


def save_figure(rows: list[dict[str, Any]], args: argparse.Namespace, out: Path) -> None:
    from matplotlib.figure import Figure

    from pcgraph.viz import save_figure as save

    fig = Figure(figsize=(8.4, 3.4), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, key, title in zip(
        axes, ("best", "final"), ("best test accuracy", "final test accuracy"), strict=True
    ):
        for i, init in enumerate(args.inits):
            cells = sorted((r for r in rows if r["init"] == init), key=lambda r: r["T"])
            Ts = [r["T"] for r in cells]
            mean = [r[f"{key}_accuracy_mean"] for r in cells]
            std = [r[f"{key}_accuracy_std"] for r in cells]
            ax.errorbar(Ts, mean, yerr=std, color=f"C{i}", marker="o", ms=4, capsize=3, label=init)
        ax.set_xscale("log", base=2)
        ax.set_xticks(args.T, [str(t) for t in args.T])
        ax.set_xlabel("inference steps T")
        ax.set_title(f"{title} after {args.epochs} epochs", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy")
    fig.legend(*axes[0].get_legend_handles_labels(), fontsize=8, loc="outside right upper")
    save(fig, out / "accuracy_vs_T.png", dpi=90)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out, train, test = shared.start_run(args)
    started = time.perf_counter()
    runs = shared.run_grid(args, train, test, topology=TOPOLOGY, inits=args.inits)
    rows = summarize(runs)
    print_table(rows, args)
    shared.write_results(out, args, train, test, started, runs=runs, summary=rows)
    save_figure(rows, args, out)
    print(f"results and figures written to {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
