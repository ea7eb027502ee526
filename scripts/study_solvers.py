"""The study of docs/results.md §6: learning schedules, inference solvers and depth.

Part ``grid`` trains mlp5_fashion on the embedded FashionMNIST subset (5,000 train / 1,000 test,
batch 64, 3 epochs, AdamW 1e-3, γ = 0.1) for each init ∈ {forward, hybrid} × schedule ∈
{standard, incremental} × solver ∈ {sgd (= Euler), heun} × T ∈ {1, 2, 4, 8} × 3 seeds, and
records per epoch the test accuracy, the SMMs spent and the wall time (a run whose inference
diverges is recorded with the epochs it finished). Part ``decoder`` trains decoder4_fashion as
the main job does (memory or zero init, 4 epochs) for each schedule × solver × T ∈ {2, 8} × 3
seeds and records the test reconstruction MSE. Part ``depth`` trains
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
from dataclasses import dataclass
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
    try:
        trainer.fit()
        outcome = "trained"
    except EnergyError:  # the epochs before the divergence stay in the history
        outcome = "diverged"
    h = trainer.history.to_dict()
    return {
        "init": init,
        "schedule": schedule,
        "solver": solver,
        "T": T,
        "seed": seed,
        "accuracy": h.get("test_accuracy", []),
        "smm_total": h.get("smm_total", []),
        "wall_s": clock.walls,
        "outcome": outcome,
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


def read_log(path: Path) -> list[dict[str, Any]]:
    """The records a part wrote to its ``--log``, one JSON object a line."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass(frozen=True)
class GridCell:
    """One (init, schedule, solver, T) of part ``grid``, over its seeds.

    ``smm`` and ``seconds`` are at the first epoch whose test accuracy reached the target, means
    over the seeds that reached it (None when none did). A seed that diverged counts as neither
    reaching the target nor in ``best`` (None when every seed diverged)."""

    best: float | None  # mean over the seeds that trained of their best test accuracy
    smm: float | None
    seconds: float | None
    reached: int
    diverged: int  # seeds whose inference diverged: they neither reach the target nor count in best
    seeds: int


def grid_cells(
    rows: list[dict[str, Any]], target: float
) -> dict[tuple[str, str, str, int], GridCell]:
    """Part ``grid``'s records by (init, schedule, solver, T), in sorted order."""
    cells = {}
    for key in sorted({(r["init"], r["schedule"], r["solver"], r["T"]) for r in rows}):
        rs = [r for r in rows if (r["init"], r["schedule"], r["solver"], r["T"]) == key]
        ok = [r for r in rs if r.get("outcome", "trained") == "trained"]
        smms, secs = [], []
        for r in ok:
            hit = next((i for i, a in enumerate(r["accuracy"]) if a >= target), None)
            if hit is not None:
                smms.append(r["smm_total"][hit])
                secs.append(r["wall_s"][hit])
        cells[key] = GridCell(
            best=statistics.mean(max(r["accuracy"]) for r in ok) if ok else None,
            smm=statistics.mean(smms) if smms else None,
            seconds=statistics.mean(secs) if secs else None,
            reached=len(smms),
            diverged=len(rs) - len(ok),
            seeds=len(rs),
        )
    return cells


def grid_table(rows: list[dict[str, Any]], target: float) -> str:
    """Part ``grid`` as a Markdown table: best accuracy, SMMs and seconds to ``target``."""
    lines = [
        f"| init | schedule | solver | T | best accuracy (mean) | SMMs to {target} | "
        f"seconds to {target} | seeds reaching it |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (init, schedule, solver, T), c in grid_cells(rows, target).items():
        best = f"{c.best:.3f}" if c.best is not None else "diverged"
        best += f" ({c.diverged} diverged)" if c.diverged and c.best is not None else ""
        smm = f"{c.smm:.0f}" if c.smm is not None else "—"
        sec = f"{c.seconds:.1f}" if c.seconds is not None else "—"
        lines.append(
            f"| {init} | {schedule} | {solver} | {T} | {best} | {smm} | {sec} | "
            f"{c.reached}/{c.seeds} |"
        )
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class DecoderCell:
    """One (init, schedule, solver, T) of part ``decoder``: means over the seeds that trained
    (None when every seed diverged)."""

    mse: float | None  # test reconstruction MSE after the last epoch
    smm: float | None  # SMMs spent in training
    seconds: float | None
    diverged: int
    seeds: int


def decoder_cells(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str, int], DecoderCell]:
    """Part ``decoder``'s records by (init, schedule, solver, T), in sorted order."""
    cells = {}
    for key in sorted({(r["init"], r["schedule"], r["solver"], r["T"]) for r in rows}):
        rs = [r for r in rows if (r["init"], r["schedule"], r["solver"], r["T"]) == key]
        ok = [r for r in rs if r["mse"]]
        cells[key] = DecoderCell(
            mse=statistics.mean(r["mse"][-1] for r in ok) if ok else None,
            smm=statistics.mean(r["smm_total"][-1] for r in ok) if ok else None,
            seconds=statistics.mean(r["wall_s"][-1] for r in ok) if ok else None,
            diverged=len(rs) - len(ok),
            seeds=len(rs),
        )
    return cells


def decoder_table(rows: list[dict[str, Any]]) -> str:
    """Part ``decoder`` as a Markdown table: test MSE, SMMs and seconds of training."""
    lines = [
        "| init | schedule | solver | T | test MSE after 4 epochs (mean) | SMMs | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for (init, schedule, solver, T), c in decoder_cells(rows).items():
        mse = f"{c.mse:.4f}" if c.mse is not None else "diverged"
        smm = f"{c.smm:.0f}" if c.smm is not None else "—"
        sec = f"{c.seconds:.1f}" if c.seconds is not None else "—"
        extra = f" ({c.diverged} diverged)" if c.diverged and c.mse is not None else ""
        lines.append(f"| {init} | {schedule} | {solver} | {T} | {mse}{extra} | {smm} | {sec} |")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class DepthCell:
    """One (depth, parameterization) of part ``depth``, over its seeds."""

    accuracy: float | None  # mean test accuracy of the seeds that trained
    trained: int
    diverged: int


def depth_cells(rows: list[dict[str, Any]]) -> dict[tuple[int, str], DepthCell]:
    """Part ``depth``'s records by (depth, parameterization), in sorted order."""
    cells = {}
    for key in sorted({(r["depth"], r["parameterization"]) for r in rows}):
        rs = [r for r in rows if (r["depth"], r["parameterization"]) == key]
        accs = [r["accuracy"] for r in rs if r["accuracy"] is not None]
        cells[key] = DepthCell(
            accuracy=statistics.mean(accs) if accs else None,
            trained=len(accs),
            diverged=len(rs) - len(accs),
        )
    return cells


def depth_table(rows: list[dict[str, Any]]) -> str:
    """Part ``depth`` as a Markdown table: runs trained or diverged, mean test accuracy."""
    lines = [
        "| depth | parameterization | runs trained / diverged | test accuracy (mean) |",
        "|---|---|---|---|",
    ]
    for (depth, par), c in depth_cells(rows).items():
        mean = f"{c.accuracy:.3f}" if c.accuracy is not None else "—"
        lines.append(f"| {depth} | {par} | {c.trained} / {c.diverged} | {mean} |")
    return "\n".join(lines) + "\n"


def table(path: Path, target: float) -> str:
    """The table of the part that wrote ``path``."""
    rows = read_log(path)
    if rows and rows[0].get("model") == "decoder":
        return decoder_table(rows)
    if rows and "depth" in rows[0]:
        return depth_table(rows)
    return grid_table(rows, target)


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
        print(table(args.src or args.log, args.target), end="")
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
