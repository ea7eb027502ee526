"""Per-update time of pcgraph on CUDA — eager, with the inference loop captured in a CUDA graph,
and with torch.compile'd steps — next to a backprop step of the same MLP, in one process
(medians, interleaved).

    python benchmarks/bench_cuda_graph.py [--json] [--batches 64,256,1024] [--T 8]

Needs CUDA. Prints, per batch size: eager, graphed and compiled pcgraph and BP times (ms) and
the ratios to eager and to BP.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

import pcgraph as pc

TOPOLOGY = Path(__file__).resolve().parent.parent / "topologies" / "mlp5_fashion.yaml"


def timed(fn, repeats: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        out.append((time.perf_counter() - start) * 1e3)
    return out


def measure(batch: int, T: int, repeats: int) -> dict[str, float]:
    """Median ms of eager pcgraph, graphed pcgraph and BP at one batch size."""
    x = torch.rand(batch, 784, device="cuda")
    labels = torch.randint(0, 10, (batch,), device="cuda")
    y = torch.nn.functional.one_hot(labels, 10).float()
    learners = {}
    for mode in ("eager", "graphed", "compiled"):
        net = pc.compile(TOPOLOGY, seed=0, device="cuda")
        learners[mode] = pc.PCLearner(
            net,
            init="forward",
            T=T,
            lr_neurons=0.05,
            cuda_graph=mode == "graphed",
            compile_step=mode == "compiled",
            optimizer=torch.optim.AdamW(net.parameters(), lr=5e-4, weight_decay=1e-4),
        )
    mlp = nn.Sequential(
        nn.Linear(784, 256),
        nn.GELU(),
        nn.Linear(256, 256),
        nn.GELU(),
        nn.Linear(256, 256),
        nn.GELU(),
        nn.Linear(256, 256),
        nn.GELU(),
        nn.Linear(256, 10),
    ).cuda()
    opt = torch.optim.AdamW(mlp.parameters(), lr=5e-4, weight_decay=1e-4)

    def bp() -> None:
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(mlp(x), labels).backward()
        opt.step()

    fns = {
        "eager": lambda: learners["eager"].train_step({"x": x, "y": y}),
        "graphed": lambda: learners["graphed"].train_step({"x": x, "y": y}),
        "compiled": lambda: learners["compiled"].train_step({"x": x, "y": y}),
        "bp": bp,
    }
    for fn in fns.values():
        timed(fn, 5)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(max(repeats // 10, 1)):
        for name, fn in fns.items():
            times[name] += timed(fn, 10)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "batch": batch,
        "T": T,
        **{f"{k}_ms": v for k, v in med.items()},
        "graphed_vs_eager": med["graphed"] / med["eager"],
        "compiled_vs_eager": med["compiled"] / med["eager"],
        "graphed_vs_bp": med["graphed"] / med["bp"],
        "eager_vs_bp": med["eager"] / med["bp"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--batches", default="64,256,1024")
    p.add_argument("--T", type=int, default=8)
    p.add_argument("--repeats", type=int, default=100)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("needs CUDA", file=sys.stderr)
        return 2
    rows = [measure(int(b), args.T, args.repeats) for b in args.batches.split(",")]
    if args.json:
        print(json.dumps({"device": torch.cuda.get_device_name(), "rows": rows}, indent=2))
    else:
        print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
        print(
            f"{'B':>6} {'T':>3} {'eager ms':>9} {'graph ms':>9} {'compiled':>9} {'bp ms':>7} "
            f"{'graph/eager':>11} {'comp/eager':>10} {'graph/bp':>9} {'eager/bp':>9}"
        )
        for r in rows:
            print(
                f"{r['batch']:>6} {r['T']:>3} {r['eager_ms']:9.3f} {r['graphed_ms']:9.3f} "
                f"{r['compiled_ms']:9.3f} {r['bp_ms']:7.3f} {r['graphed_vs_eager']:11.2f} "
                f"{r['compiled_vs_eager']:10.2f} {r['graphed_vs_bp']:9.2f} {r['eager_vs_bp']:9.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
