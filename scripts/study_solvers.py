"""The study of docs/results.md §6: learning schedules, inference solvers and depth.

Part ``grid`` trains mlp5_fashion on the embedded FashionMNIST subset (5,000 train / 1,000 test,
batch 64, 3 epochs, AdamW 1e-3, γ = 0.1) for each init ∈ {forward, hybrid} × schedule ∈
{standard, incremental} × solver ∈ {sgd (= Euler), heun} × T ∈ {1, 2, 4, 8} × 3 seeds, and
records per epoch the test accuracy, the SMMs spent and the wall time. Part ``decoder`` trains
decoder4_fashion as the main job does (memory or zero init, 4 epochs) for each schedule × solver
× T ∈ {2, 8} × 3 seeds and records the test reconstruction MSE. Part ``depth`` trains
``residual_mlp(depth, 128)`` for depth ∈ {8, 16, 32, 64} with and without μPC (1 epoch, γ 0.5,
Adam 1e-2, T = 8, 3 seeds), recording the accuracy or the divergence.

Wall times are of the machine the parts run on (one torch thread by default, ``--threads``); SMMs
are counted by pcgraph (sequential matrix multiplications, the paper's cost measure).

    python scripts/study_solvers.py grid  --log runs/study/grid.jsonl
    python scripts/study_solvers.py decoder --log runs/study/decoder.jsonl
    python scripts/study_solvers.py depth --log runs/study/depth.jsonl
    python scripts/study_solvers.py table --from runs/study/grid.jsonl --target 0.75
    python scripts/study_solvers.py table --from runs/study/depth.jsonl
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

import pcgraph as pc
from pcgraph.data import embedded_dataset
from pcgraph.errors import EnergyError
from pcgraph.train import Callback, Trainer

ROOT = Path(__file__).resolve().parent.parent


class _Clock(Callback):
    def __init__(self) -> None:
        self.start = 0.0
        self.walls: list[float] = []

    def on_train_start(self, trainer: Trainer) -> None:
        self.start = time.perf_counter()

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        self.walls.append(time.perf_counter() - self.start)


def grid_run(init: str, schedule: str, solver: str, T: int, seed: int) -> dict[str, Any]:
    torch.manual_seed(seed)
    net = pc.compile(ROOT / "topologies" / "mlp5_fashion.yaml", seed=seed)
    learner = pc.PCLearner(
        net,
        init=init,
        T=T,
        lr_neurons=0.1,
        neuron_optimizer=solver,  # type: ignore[arg-type]
        schedule=schedule,
        optimizer=torch.optim.AdamW(net.parameters(), lr=1e-3),
    )
    clock = _Clock()
    trainer = Trainer(
        learner,
        embedded_dataset("train"),
        embedded_dataset("test"),
        batch_size=60 if init == "hybrid" else 64,  # stream-aligned batches: a multiple of 10
        epochs=3,
        seed=seed,
        progress=False,
        callbacks=[clock],
    )
    h = trainer.fit().to_dict()
    return {
        "init": init,
        "schedule": schedule,
        "solver": solver,
        "T": T,
        "seed": seed,
        "accuracy": h["test_accuracy"],
        "smm_total": h["smm_total"],
        "wall_s": clock.walls,
    }


def decoder_run(init: str, schedule: str, solver: str, T: int, seed: int) -> dict[str, Any]:
    """decoder4_fashion as the main job trains it (γ 0.02, AdamW 3e-3, memory lr 1e-3, 4 epochs,
    batch 64), evaluated at T_eval = T_train with the training γ."""
    torch.manual_seed(seed)
    net = pc.compile(ROOT / "topologies" / "decoder4_fashion.yaml", seed=seed)
    learner = pc.PCLearner(
        net,
        init=init,
        T=T,
        lr_neurons=0.02,
        neuron_optimizer=solver,  # type: ignore[arg-type]
        schedule=schedule,
        clamp="generate",
        optimizer=torch.optim.AdamW(net.parameters(), lr=3e-3),
        init_options={"lr": 1e-3, "seed": seed} if init == "memory" else None,
        generator=torch.Generator().manual_seed(seed),
    )
    clock = _Clock()
    trainer = Trainer(
        learner,
        embedded_dataset("train"),
        embedded_dataset("test"),
        task="generation",
        batch_size=64,
        epochs=4,
        seed=seed,
        progress=False,
        callbacks=[clock],
    )
    try:
        h = trainer.fit().to_dict()
        mse, smm, outcome = h["test_mse"], h["smm_total"], "trained"
    except EnergyError:
        mse, smm, outcome = [], [], "diverged"
    return {
        "model": "decoder",
        "init": init,
        "schedule": schedule,
        "solver": solver,
        "T": T,
        "seed": seed,
        "mse": mse,
        "smm_total": smm,
        "wall_s": clock.walls,
        "outcome": outcome,
    }


def depth_run(depth: int, parameterization: str, seed: int) -> dict[str, Any]:
    torch.manual_seed(seed)
    net = pc.compile(pc.residual_mlp(depth, 128, parameterization=parameterization), seed=seed)
    learner = pc.PCLearner(
        net,
        init="forward",
        T=8,
        lr_neurons=0.5,
        optimizer=torch.optim.Adam(net.parameters(), lr=1e-2),
    )
    trainer = Trainer(
        learner,
        embedded_dataset("train"),
        embedded_dataset("test"),
        batch_size=64,
        seed=seed,
        progress=False,
    )
    start = time.perf_counter()
    try:
        acc: float | None = trainer.fit().to_dict()["test_accuracy"][-1]
        outcome = "trained"
    except EnergyError:
        acc, outcome = None, "diverged"
    return {
        "depth": depth,
        "parameterization": parameterization,
        "seed": seed,
        "accuracy": acc,
        "outcome": outcome,
        "wall_s": time.perf_counter() - start,
    }


def _log(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    print(json.dumps(record), flush=True)


def table(path: Path, target: float) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if rows and rows[0].get("model") == "decoder":
        print("| init | schedule | solver | T | test MSE after 4 epochs (mean) | SMMs | seconds |")
        print("|---|---|---|---|---|---|---|")
        keys = sorted({(r["init"], r["schedule"], r["solver"], r["T"]) for r in rows})
        for key in keys:
            rs = [r for r in rows if (r["init"], r["schedule"], r["solver"], r["T"]) == key]
            ok = [r for r in rs if r["mse"]]
            mse = f"{statistics.mean(r['mse'][-1] for r in ok):.4f}" if ok else "diverged"
            smm = f"{statistics.mean(r['smm_total'][-1] for r in ok):.0f}" if ok else "—"
            sec = f"{statistics.mean(r['wall_s'][-1] for r in ok):.1f}" if ok else "—"
            extra = f" ({len(rs) - len(ok)} diverged)" if len(ok) < len(rs) else ""
            print(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {mse}{extra} | {smm} | {sec} |")
        return
    if rows and "depth" in rows[0]:
        print("| depth | parameterization | runs trained / diverged | test accuracy (mean) |")
        print("|---|---|---|---|")
        keys = sorted({(r["depth"], r["parameterization"]) for r in rows})
        for depth, par in keys:
            rs = [r for r in rows if (r["depth"], r["parameterization"]) == (depth, par)]
            accs = [r["accuracy"] for r in rs if r["accuracy"] is not None]
            mean = f"{statistics.mean(accs):.3f}" if accs else "—"
            print(f"| {depth} | {par} | {len(accs)} / {len(rs) - len(accs)} | {mean} |")
        return
    print(
        f"| init | schedule | solver | T | best accuracy (mean) | SMMs to {target} | "
        f"seconds to {target} | seeds reaching it |"
    )
    print("|---|---|---|---|---|---|---|---|")
    keys = sorted({(r["init"], r["schedule"], r["solver"], r["T"]) for r in rows})
    for key in keys:
        rs = [r for r in rows if (r["init"], r["schedule"], r["solver"], r["T"]) == key]
        best = statistics.mean(max(r["accuracy"]) for r in rs)
        smms, secs = [], []
        for r in rs:
            hit = next((i for i, a in enumerate(r["accuracy"]) if a >= target), None)
            if hit is not None:
                smms.append(r["smm_total"][hit])
                secs.append(r["wall_s"][hit])
        smm = f"{statistics.mean(smms):.0f}" if smms else "—"
        sec = f"{statistics.mean(secs):.1f}" if secs else "—"
        print(
            f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {best:.3f} | {smm} | {sec} | "
            f"{len(smms)}/{len(rs)} |"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("part", choices=["grid", "decoder", "depth", "table"])
    ap.add_argument("--log", type=Path, default=Path("runs/study/study.jsonl"))
    ap.add_argument("--from", dest="src", type=Path)
    ap.add_argument("--target", type=float, default=0.75)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.part == "table":
        table(args.src or args.log, args.target)
        return 0
    if args.part == "grid":
        for init, schedule, solver, T, seed in itertools.product(
            ("forward", "hybrid"),
            ("standard", "incremental"),
            ("sgd", "heun"),
            (1, 2, 4, 8),
            range(args.seeds),
        ):
            _log(args.log, grid_run(init, schedule, solver, T, seed))
    elif args.part == "decoder":
        for init, schedule, solver, T, seed in itertools.product(
            ("memory", "zero"),
            ("standard", "incremental"),
            ("sgd", "heun"),
            (2, 8),
            range(args.seeds),
        ):
            _log(args.log, decoder_run(init, schedule, solver, T, seed))
    else:
        for depth, par, seed in itertools.product(
            (8, 16, 32, 64), ("mupc", "sp"), range(args.seeds)
        ):
            _log(args.log, depth_run(depth, par, seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
