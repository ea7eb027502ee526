"""What initialization buys: wall time and SMMs to reach a target test accuracy on FashionMNIST,
forward vs average vs hybrid, with the same hyperparameters, over several seeds.

    python benchmarks/bench_init.py [--json] [--quick] [--seeds 0,1,2] [--T 2] [--target 0.65]

mlp5_fashion, batch 300 (stream-aligned for average/hybrid), neuron SGD γ = 0.05, AdamW 5e-4
(wd 1e-4), hybrid K = 2, test accuracy from a forward pass after every epoch — the setting of
``examples/classification.py``, whose training run (``examples/_shared.py``) this script
reuses. SMMs are counted by pcgraph (2T + the initialization's cost per update); seconds are
training time only (evaluation excluded), so compare them within one run. Prints a table;
``--json`` prints one JSON object with the per-seed records and ``hybrid_vs_forward_smm`` /
``hybrid_vs_forward_seconds`` (ratios of the means to the target; null when a method never
reached it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

# one PC training run as the examples do it (Trainer.fit with an EpochRecorder)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
import _shared as shared

TOPOLOGY = Path(__file__).resolve().parent.parent / "topologies" / "mlp5_fashion.yaml"

METHODS = ("forward", "average", "hybrid")


class _NoBar:
    """Progress is not shown in a benchmark."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **values: Any) -> None:
        pass


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quick", action="store_true", help="one seed, small budget (< 1 min)")
    p.add_argument("--full", action="store_true", help="the whole dataset (default: embedded)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--T", type=int, default=2, help="inference steps per update")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--target", type=float, default=0.65, help="test accuracy to reach")
    p.add_argument("--train-size", type=int, default=None)
    p.add_argument("--test-size", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs = "0", 2
        args.train_size = args.train_size or 1500
        args.test_size = args.test_size or 500
    args.seeds = [int(s) for s in args.seeds.split(",")]
    # the fields the example's loop reads
    args.batch_size, args.lr, args.weight_decay, args.lr_neurons, args.K = 300, 5e-4, 1e-4, 0.05, 2
    args.stream_aligned = "auto"
    return args


def _mean(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return statistics.fmean(got) if len(got) == len(values) and got else None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    train, test = shared.load_data(args)
    records = []
    for seed in args.seeds:
        for method in METHODS:  # interleaved per seed, to share the machine's noise
            run = shared.run_pc(
                args, method, args.T, seed, train, test, _NoBar(), topology=TOPOLOGY
            )
            run |= shared.first_reaching(run, args.target)
            records.append(run)
    rows = {}
    for method in METHODS:
        group = [r for r in records if r["method"] == method]
        rows[method] = {
            "smm_per_update": group[0]["smm_per_update"],
            "reached": sum(r["target_reached"] for r in group),
            "seeds": len(group),
            "smm_to_target": _mean([r["smm_to_target"] for r in group]),
            "seconds_to_target": _mean([r["seconds_to_target"] for r in group]),
            "final_accuracy": statistics.fmean(r["test_accuracy"][-1] for r in group),
        }

    def ratio(key: str) -> float | None:
        a, b = rows["hybrid"][key], rows["forward"][key]
        return None if a is None or b is None else a / b

    payload: dict[str, Any] = {
        "benchmark": "bench_init",
        "target": args.target,
        "T": args.T,
        "epochs": args.epochs,
        "n_train": len(train),
        "n_test": len(test),
        "data": train.source,
        "rows": rows,
        "hybrid_vs_forward_smm": ratio("smm_to_target"),
        "hybrid_vs_forward_seconds": ratio("seconds_to_target"),
        "records": [
            {
                k: r[k]
                for k in (
                    "method",
                    "seed",
                    "test_accuracy",
                    "smm_total",
                    "train_seconds",
                    "smm_to_target",
                    "seconds_to_target",
                )
            }
            for r in records
        ],
    }
    if args.json:
        print(json.dumps(payload, indent=2))
        return 0
    print(
        f"bench_init — mlp5_fashion, T={args.T}, {args.epochs} epochs, {len(train)} train / "
        f"{len(test)} test images ({train.source}), target accuracy {args.target}"
    )
    print(
        f"{'method':>8} {'SMM/upd':>7} {'reached':>7} {'SMMs to target':>15} "
        f"{'s to target':>11} {'final acc':>9}"
    )
    for method, r in rows.items():
        smm = "—" if r["smm_to_target"] is None else f"{r['smm_to_target']:.0f}"
        sec = "—" if r["seconds_to_target"] is None else f"{r['seconds_to_target']:.2f}"
        print(
            f"{method:>8} {r['smm_per_update']:>7} {r['reached']:>3}/{r['seeds']:<3} "
            f"{smm:>15} {sec:>11} {r['final_accuracy']:9.3f}"
        )
    print(
        f"hybrid/forward to target: SMMs {payload['hybrid_vs_forward_smm']}, "
        f"seconds {payload['hybrid_vs_forward_seconds']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
