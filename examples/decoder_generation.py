"""The paper's unsupervised experiment: a 4-layer generative decoder on FashionMNIST.

Only the image is observed (clamp set = {image}); the latent z is a root nothing clamps, so forward
initialization is impossible (Proposition 3.2). The script trains the decoder with each
initialization — memory (Hopfield), zero, random, null — at small numbers of inference steps
T_train, then reconstructs test images: clamp the image, infer the free nodes for T_eval steps from
the initializer, and forward the inferred latent back to an image. It reports the test
reconstruction MSE per (init, T_train, T_eval) and saves, under --out:

  results.json          {"results": [{"init", "T_train", "T_eval", "test_mse"}, ...], "config",
                        "machine" (CPU, vector width, threads, torch), ...}
  reconstructions.png   originals vs reconstructions per initialization
  learning_curves.png   test MSE per epoch per initialization
  energy_flow_<init>.png per-node energy over inference steps (memory and zero init)

The memory is trained on the energy at initialization through the forward sweep (loss=energy),
which has a learning signal at every T, also below z's depth of 4 (docs/initializations.md), and
has a linear path o W beside its retrieval (--mem-linear): the retrieval alone returns a blend of
stored patterns, not each image's detail. Evaluation uses the neuron step min(γ, 1/λ_max), λ_max
the largest curvature of the energy at the initial state (--eval-step stable); with a stateless
neuron solver every T_eval is read along one inference run of max(T_eval) steps. Each init trains
its weights with its own best optimizer (WEIGHTS in _decoder.py: SGD 4e-5 for memory, AdamW 3e-3
for the others; docs/results.md §4). The table is the mean over --seeds (0, 1, 2), run side by
side in --workers processes with one thread per run, beside the PCA floors of the same images.

Examples:
  python examples/decoder_generation.py            # defaults: embedded subset, < 3 min
  python examples/decoder_generation.py --quick    # ~1 minute smoke run
  python examples/decoder_generation.py --full --device cuda
  python examples/decoder_generation.py --full   # memory by ePC (below a 50-component PCA),
                                                 # the others by PC, 4 epochs
  python examples/decoder_generation.py --algorithm epc   # every init by error-based PC
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import _shared as shared
import torch
from _decoder import (
    TOPOLOGY,
    WEIGHTS,
    largest_curvature,
    pca_floors,
    run_job,
    stable_step_size,
    test_mse,
)
from tqdm import tqdm

import pcgraph as pc
from pcgraph.atomic import atomic_write_text

__all__ = [
    "WEIGHTS",
    "largest_curvature",
    "main",
    "pca_floors",
    "stable_step_size",
    "test_mse",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="~1-minute smoke run (CI runs this)")
    p.add_argument(
        "--full",
        action="store_true",
        help="the whole dataset (needs the real files; see pcgraph.data)",
    )
    p.add_argument("--out", default="runs/decoder_generation", help="output directory")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument(
        "--inits",
        default="memory,zero,random,null",
        help="comma-separated initializations to compare",
    )
    p.add_argument("--T-train", default=None, help="comma-separated T_train values")
    p.add_argument("--T-eval", default=None, help="comma-separated T_eval values")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--train-size", type=int, default=None, help="training images used")
    p.add_argument("--test-size", type=int, default=None, help="test images used")
    # defaults: the search in docs/results.md (§4b)
    p.add_argument(
        "--optimizer",
        default=None,
        choices=["sgd", "adamw"],
        help="the weights' optimizer (SGD with momentum: its step follows each layer's local "
        "error; AdamW's normalized step overshoots the small local targets of the hidden "
        "layers at small T, docs/results.md §4b)",
    )
    p.add_argument(
        "--lr",
        type=float,
        default=None,
        help="learning rate of the weights (default: each init's own, WEIGHTS in the source)",
    )
    p.add_argument(
        "--algorithm",
        default=None,
        choices=["pc", "epc"],
        help="inference in the states (pc) or in the prediction errors (epc: one step reaches "
        "every layer, so every weight gets its full gradient at small T; each init then trains "
        "with AdamW 1e-3 (5e-4 with --full) and evaluates with the fixed step γ). Default: pc; "
        "with --full, epc for memory init and pc for the others, each init's best "
        "(docs/results.md §4)",
    )
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    p.add_argument("--lr-neurons", type=float, default=0.02, help="γ, SGD rate of the neurons")
    p.add_argument(
        "--eval-step",
        default="stable",
        choices=["stable", "fixed", "backtrack"],
        help="neuron step at evaluation: min(γ, 1/λ_max) of the energy's Hessian (stable "
        "for any T_eval), γ itself, or γ with the engine's backtracking (a step that raises "
        "the energy is undone and halved)",
    )
    p.add_argument(
        "--seeds",
        default=None,
        help="comma-separated seeds (weights, memory, batch order); the table reports their "
        "mean (default 0,1,2; --quick: 0)",
    )
    p.add_argument("--seed", type=int, default=None, help="one seed: the same as --seeds N")
    p.add_argument("--data-seed", type=int, default=0, help="draws the train/test subsets")
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="runs side by side in separate processes, one thread each (0: one per CPU core, "
        "at most the number of runs; 1 on CUDA)",
    )
    p.add_argument(
        "--eval-batch",
        type=int,
        default=None,
        help="test images per inference call (default: --batch-size under null init, which "
        "starts from the last training batch's states only when the sizes match; 250 under the "
        "others, whose results per image do not depend on it and whose larger products run "
        "faster)",
    )
    m = p.add_argument_group("memory initialization (docs/initializations.md)")
    m.add_argument(
        "--mem-loss",
        default="energy",
        choices=["energy", "sweep", "target"],
        help="the memory's loss: energy at init through the sweep, Eq. 9 through the sweep, "
        "or Eq. 9 on z only (the paper's text; no signal when T_train < 4)",
    )
    # default 1e-2 under PC: the best of 1e-3, 2e-3, 3e-3, 5e-3, 1e-2 (memory, T_train 2, seeds 0
    # and 1, test MSE 0.0262 / 0.0245 / 0.0239 / 0.0232 / 0.0226; docs/results.md §4) once the
    # memory learns before the weight step; 2e-3 under ePC (MEMORY_LR in _decoder.py)
    m.add_argument(
        "--mem-lr",
        type=float,
        default=None,
        help="the memory's Adam learning rate (default 1e-2 under pc, 2e-3 under epc)",
    )
    m.add_argument("--mem-steps", type=int, default=1, help="memory steps per minibatch")
    m.add_argument(
        "--mem-linear",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a linear path o W beside the retrieval (the retrieval alone returns a blend of "
        "stored patterns, not each image's own detail)",
    )
    m.add_argument("--patterns", type=int, default=512, help="stored patterns M")
    m.add_argument("--heads", type=int, default=4, help="attention heads")
    m.add_argument("--embed-dim", type=int, default=128, help="query/key width")
    m.add_argument("--beta", type=float, default=None, help="β (default 1/√head_dim)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = p.parse_args(argv)
    if args.quick and args.full:
        p.error("--quick and --full exclude each other")
    preset = (
        {
            "T_train": "4",
            "T_eval": "4",
            "epochs": 1,
            "train_size": 1000,
            "test_size": 256,
            "seeds": "0",
        }
        if args.quick
        else {
            "T_train": "2,4,8",
            "T_eval": "2,4,8,16,32,64",
            "seeds": "0,1,2",
            "epochs": 4,
            "train_size": None,
            "test_size": None,
        }
        if args.full
        else {
            "T_train": "2,8",
            "T_eval": "2,8,32,64",
            "epochs": 4,
            "train_size": 5000,
            "test_size": 1000,
            "seeds": "0,1,2",
        }
    )
    if args.seed is not None:
        if args.seeds is not None:
            p.error("--seed and --seeds exclude each other")
        args.seeds = str(args.seed)
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.T_train = [int(t) for t in str(args.T_train).split(",")]
    args.T_eval = [int(t) for t in str(args.T_eval).split(",")]
    args.inits = [s.strip() for s in args.inits.split(",") if s.strip()]
    args.seeds = [int(s) for s in str(args.seeds).split(",")]
    if args.workers <= 0:
        runs = len(args.seeds) * len(args.inits) * len(args.T_train)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        args.workers = 1 if args.device != "cpu" else max(1, min(cores or 1, runs))
    return args


def run_jobs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every (init, T_train, seed), side by side in ``--workers`` processes (one thread each)
    or in this process; returned in the order of the grid whatever order they finish in."""
    grid = [(i, t, s) for s in args.seeds for i in args.inits for t in args.T_train]
    first = args.seeds[0]
    jobs = [(args, i, t, s, s == first) for i, t, s in grid]
    done: dict[tuple[str, int, int], dict[str, Any]] = {}
    with tqdm(total=len(jobs), desc="training", disable=args.no_progress, file=sys.stdout) as bar:
        if args.workers <= 1:
            for job in jobs:
                found = run_job(*job)
                done[job[1:4]] = found
                bar.update(1)
        else:
            # spawn: a fresh interpreter per worker (fork would copy torch's thread pools)
            # the longest runs first (largest T_train, then the memory's extra network), so
            # that no long run starts last while the other workers idle; the order changes no
            # number (each run seeds its own generators and uses one thread)
            longest_first = sorted(jobs, key=lambda job: (-job[2], job[1] != "memory"))
            with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
                futures = {pool.submit(run_job, *job): job[1:4] for job in longest_first}
                for future in as_completed(futures):
                    done[futures[future]] = future.result()
                    bar.update(1)
    return [done[key] for key in grid]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda but CUDA is not available", file=sys.stderr)
        return 2
    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train_set, test_set = shared.load_data(args, seed=args.data_seed)
    test = test_set.flat()
    print(shared.machine_line(), f"| {args.workers} worker(s) × 1 thread per run")
    print(f"data: {len(train_set)} train / {len(test)} test images from {train_set.source}")
    print(
        pc.analyze(
            pc.GraphSpec.from_yaml(TOPOLOGY), "generate", T=min(args.T_train), init="memory"
        ).summary()
    )
    floors = pca_floors(train_set.flat(), test)
    jobs = run_jobs(args)
    results = [
        {
            "init": job["init"],
            "T_train": job["T_train"],
            "seed": job["seed"],
            "T_eval": T_eval,
            "test_mse": mse,
            "algorithm": job["algorithm"],
            "train_seconds": job["seconds"],
            "smm_total": job["smm_total"],
        }
        for job in jobs
        for T_eval, mse in job["evals"].items()
    ]
    summary = summarize(results, args)
    print_table(summary, floors, args)
    algorithms = {job["init"]: job["algorithm"] for job in jobs}
    print("trained by: " + ", ".join(f"{init} {algo}" for init, algo in algorithms.items()))
    first = [job for job in jobs if job["seed"] == args.seeds[0]]
    curves = {
        f"{job['init']} (T_train={job['T_train']})": {
            "epoch": list(range(1, len(job["curve"]) + 1)),
            "test_mse": job["curve"],
            "energy": job["energy"],
        }
        for job in first
    }
    payload = {
        "results": results,
        "summary": summary,
        "pca_floors": {str(k): v for k, v in floors.items()},
        "curves": curves,
        "config": {k: v for k, v in vars(args).items()},
        "data_source": train_set.source,
        "machine": shared.machine() | {"workers": args.workers, "threads_per_run": 1},
        "wall_seconds": time.perf_counter() - started,
    }
    atomic_write_text(out / "results.json", json.dumps(payload, indent=2))
    save_figures(args, first, curves, test, out)
    print(f"results and figures written to {out}/ ({payload['wall_seconds']:.0f} s)")
    return 0


def summarize(results: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Per (init, T_train, T_eval): the mean and standard deviation of the test MSE over the
    seeds (None where a seed diverged)."""
    rows = []
    for init in args.inits:
        for T_train in args.T_train:
            for T_eval in args.T_eval:
                cell = [
                    r["test_mse"]
                    for r in results
                    if (r["init"], r["T_train"], r["T_eval"]) == (init, T_train, T_eval)
                ]
                ok = [v for v in cell if v is not None and math.isfinite(v)]
                whole = len(ok) == len(cell)
                rows.append(
                    {
                        "init": init,
                        "T_train": T_train,
                        "T_eval": T_eval,
                        "seeds": len(cell),
                        "test_mse_mean": statistics.fmean(ok) if whole else None,
                        "test_mse_std": statistics.pstdev(ok) if whole and len(ok) > 1 else 0.0,
                        "per_seed": cell,
                    }
                )
    return rows


def print_table(
    summary: list[dict[str, Any]], floors: dict[int, float], args: argparse.Namespace
) -> None:
    seeds = ", ".join(str(s) for s in args.seeds)
    print(
        f"\ntest reconstruction MSE, mean over seeds {seeds} (rows: init, T_train; columns: T_eval)"
    )
    print(f"{'init':>8} {'T_train':>7} " + " ".join(f"{t:>8}" for t in args.T_eval))
    cells = {(r["init"], r["T_train"], r["T_eval"]): r["test_mse_mean"] for r in summary}
    for init in args.inits:
        for T_train in args.T_train:
            row = (cells[(init, T_train, t)] for t in args.T_eval)
            text = (f"{v:8.4f}" if v is not None else "diverged" for v in row)
            print(f"{init:>8} {T_train:>7} " + " ".join(text))
    print(
        "PCA floors on the same images (k components fitted on the training images): "
        + ", ".join(f"k={k}: {v:.4f}" for k, v in floors.items())
    )
    if "memory" in args.inits and len(args.inits) > 1:
        best = sum(
            1
            for T_train in args.T_train
            for t in args.T_eval
            if (m := cells[("memory", T_train, t)]) is not None
            and all(
                (v := cells[(i, T_train, t)]) is None or m <= v for i in args.inits if i != "memory"
            )
        )
        total = len(args.T_train) * len(args.T_eval)
        print(f"memory is the best init in {best} of {total} (T_train, T_eval) cells")
    if "memory" in args.inits and {2, 8} <= set(args.T_train):
        t = min(args.T_eval)
        a, b = cells[("memory", 2, t)], cells[("memory", 8, t)]
        if a is not None and b is not None:
            print(f"memory at T_eval={t}: T_train=2 / T_train=8 = {a / b:.2f}")


def save_figures(
    args: argparse.Namespace,
    jobs: list[dict[str, Any]],
    curves: dict[str, Any],
    test: torch.Tensor,
    out: Path,
) -> None:
    """The figures of the first seed's runs (see the module docstring)."""
    from pcgraph.viz import plot_energy_flow, plot_history, plot_reconstructions

    T_eval = min(args.T_eval)  # the regime the paper's claim is about
    batch = test[: args.batch_size]
    recons = {
        f"{job['init']}\nT_train={job['T_train']}\nT_eval={T_eval}": job["recon"] for job in jobs
    }
    plot_reconstructions(batch, recons, n=8, path=out / "reconstructions.png")
    plot_history(curves, path=out / "learning_curves.png")
    spec = pc.GraphSpec.from_yaml(TOPOLOGY)
    for job in jobs:
        if "trace" in job:
            plot_energy_flow(job["trace"], spec, path=out / f"energy_flow_{job['init']}.png")


if __name__ == "__main__":
    sys.exit(main())
