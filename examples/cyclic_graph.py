"""Classification on a cyclic PC graph, where forward initialization is impossible.

topologies/fully_connected_groups.yaml: the image feeds four groups of 64 tanh neurons that are
wired to each other in both directions, and every group predicts the 10-class label
(cross-entropy energy). The graph is full of cycles, so no forward sweep exists (Proposition 3.2)
— neither to initialize training nor to evaluate. The script trains it with memory (Hopfield)
initialization against the uninformed zero and random initializations.

Evaluation is inference, not a forward pass: the image is clamped, the free nodes start from the
learner's initializer (memory retrieval, zeros or noise), inference runs T_eval steps with the
label node free (a free cross-entropy node is held at softmax(μ), see pcgraph.energies),
and the class is the argmax of the label node (``learner.predict`` → ``query``). The script
records per epoch the test accuracy and the training energy per sample before inference (at the
initialization) and after it. Under --out it writes:

  results.json          {"runs": [...], "summary": [...], "config", "data_source", ...}
  cyclic_curves.png     test accuracy and energy per epoch, one line per (init, T)
  graph.png             the topology with its node roles

Examples:
  python examples/cyclic_graph.py                       # embedded subset, a few minutes
  python examples/cyclic_graph.py --quick               # < 1 minute smoke run
  python examples/cyclic_graph.py --full --train-size 10000 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import _shared as shared

import pcgraph as pc

TOPOLOGY = Path(__file__).resolve().parent.parent / "topologies" / "fully_connected_groups.yaml"
INITS = ("memory", "zero", "random")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = shared.example_parser(__doc__, out="runs/cyclic_graph")
    p.add_argument("--inits", default=",".join(INITS), help="comma-separated initializations")
    p.add_argument("--T-eval", type=int, default=None, help="inference steps to evaluate (T)")
    args = p.parse_args(argv)
    if args.epochs is None:
        args.epochs = 2 if args.quick else 8
    if args.T is None:
        args.T = "4" if args.quick else "2,8"
    args = shared.finish_args(p, args, quick={"train_size": 1500})
    args.inits = shared.comma_choices(p, args.inits, INITS, "init")
    args.stream_aligned = "none"
    args.K = 0
    return args


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for init, T, group in shared.run_groups(runs):
        e0 = shared.mean_std([r["energy_before"][-1] for r in group])
        e1 = shared.mean_std([r["energy_after"][-1] for r in group])
        rows.append(
            {
                "init": init,
                "T": T,
                "T_eval": group[0]["T_eval"],
                **shared.accuracy_stats(group),
                "final_energy_before_mean": e0[0],
                "final_energy_after_mean": e1[0],
            }
        )
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        f"\n{'init':>8} {'T':>3} {'T_eval':>6} {'final acc':>15} {'best acc':>15} "
        f"{'E(init)':>9} {'E(T)':>9} {'SMM/upd':>7}"
    )
    for r in rows:
        print(
            f"{r['init']:>8} {r['T']:>3} {r['T_eval']:>6} "
            f"{r['final_accuracy_mean']:.4f}±{r['final_accuracy_std']:.4f} "
            f"{r['best_accuracy_mean']:.4f}±{r['best_accuracy_std']:.4f} "
            f"{r['final_energy_before_mean']:9.4f} {r['final_energy_after_mean']:9.4f} "
            f"{r['smm_per_update']:>7}"
        )


def save_figures(runs: list[dict[str, Any]], args: argparse.Namespace, out: Path) -> None:
    import numpy as np
    from matplotlib.figure import Figure

    from pcgraph.viz import draw_graph, save_figure

    fig = Figure(figsize=(11.0, 3.3), layout="constrained")
    axes = fig.subplots(1, 3)
    styles = dict(zip(args.T, ["-", "--", ":", "-."] * 4, strict=False))
    keys = (
        ("test_accuracy", "test accuracy (inference, label free)"),
        ("energy_before", "energy / sample at initialization"),
        ("energy_after", "energy / sample after T steps"),
    )
    for ax, (key, title) in zip(axes, keys, strict=True):
        for i, init in enumerate(args.inits):
            for T in args.T:
                group = [r for r in runs if r["method"] == init and r["T"] == T]
                arr = np.array([r[key] for r in group], dtype=float)
                x = np.arange(1, arr.shape[1] + 1)
                mean, std = arr.mean(0), arr.std(0)
                ax.plot(x, mean, styles[T], color=f"C{i}", marker=".", ms=4, label=f"{init} T={T}")
                ax.fill_between(x, mean - std, mean + std, color=f"C{i}", alpha=0.15)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)  # whole epochs
        ax.grid(alpha=0.3)
        if key != "test_accuracy":
            ax.set_yscale("log")
    fig.legend(*axes[0].get_legend_handles_labels(), fontsize=7, loc="outside right upper")
    save_figure(fig, out / "cyclic_curves.png", dpi=90)
    graph = draw_graph(pc.GraphSpec.from_yaml(TOPOLOGY))
    save_figure(graph, out / "graph.png", dpi=70)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out, train, test = shared.start_run(args)
    analysis = pc.analyze(pc.GraphSpec.from_yaml(TOPOLOGY), "train", T=min(args.T), init="memory")
    print(analysis.summary())
    started = time.perf_counter()
    runs = shared.run_grid(
        args, train, test, topology=TOPOLOGY, inits=args.inits, eval_T=args.T_eval
    )
    rows = summarize(runs)
    print_table(rows)
    extra = {"forward_init_possible": analysis.forward_init_possible, "reason": analysis.reason}
    shared.write_results(out, args, train, test, started, runs=runs, summary=rows, **extra)
    save_figures(runs, args, out)
    print(f"results and figures written to {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
