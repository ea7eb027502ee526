"""The hyperparameter search of docs/results.md §4 (the analogue of the paper's Fig. 7).

Trains decoder4_fashion on the main job's default budget (embedded subset, 5,000 train / 1,000
test images, 4 epochs, batch 64) for each point of a grid and records the test reconstruction
MSE at T_eval ∈ {2, 4, 8, 16, 32, 64}, both with the training γ (``evals``) and with the stable
step min(γ, 1/λ_max) of examples/decoder_generation.py (``evals_stable``).

Usage (from the repository root; one process, a few seconds per run on a laptop CPU)::

    python scripts/decoder_search.py grid   --log runs/search/grid.jsonl
    python scripts/decoder_search.py seeds  --log runs/search/seeds.jsonl \\
        --from runs/search/grid.jsonl          # 3 seeds of each (init, T_train)'s best setting
    python scripts/decoder_search.py heatmap --from runs/search/grid.jsonl \\
        --out docs/img/results/decoder_fig7_heatmap.png

The grid: memory (loss ∈ {energy, sweep}) × γ ∈ {0.02, 0.05, 0.1} × memory lr ∈ {1e-3, 3e-3,
1e-2} at T_train ∈ {2, 8}; then for memory (energy) γ × weight lr ∈ {1e-3, 3e-3} × β ∈
{1/√32 (default), 0.5} at T_train ∈ {2, 4, 8} and the memory lr at T_train = 4; zero, null and
random over γ × weight lr at T_train ∈ {2, 4, 8}.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

import pcgraph as pc
from pcgraph.data import embedded_dataset, shuffled_batches

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location(
    "decoder_generation", ROOT / "examples" / "decoder_generation.py"
)
assert _spec is not None and _spec.loader is not None
dg = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dg)

T_EVAL = (2, 4, 8, 16, 32, 64)
DEFAULT: dict[str, Any] = dict(
    init="memory", T=2, epochs=4, n=5000, ntest=1000, lr=1e-3, gamma=0.1, mlr=1e-3,
    msteps=1, loss="energy", beta=None, patterns=512, seed=0,
)  # fmt: skip


def run(log: Path, **kw: Any) -> dict[str, Any]:
    """Train one setting and append its record to ``log``."""
    a = dict(DEFAULT, **kw)
    torch.manual_seed(a["seed"])
    g = torch.Generator().manual_seed(a["seed"])
    train_set, test_set = embedded_dataset("train"), embedded_dataset("test")
    if a["n"] < len(train_set):  # as the main job's load_data: the whole subset by default
        train_set = train_set.subset(a["n"], generator=g)
    if a["ntest"] < len(test_set):
        test_set = test_set.subset(a["ntest"], generator=g)
    train, test = train_set.flat(), test_set.flat()
    net = pc.compile(dg.TOPOLOGY, seed=a["seed"])
    options = {"lr": a["mlr"], "steps": a["msteps"], "loss": a["loss"], "beta": a["beta"]}
    options |= {"patterns": a["patterns"], "seed": a["seed"]}
    learner = pc.PCLearner(
        net,
        init=a["init"],
        T=a["T"],
        lr_neurons=a["gamma"],
        clamp="generate",
        optimizer=torch.optim.AdamW(net.parameters(), lr=a["lr"]),
        init_options=options if a["init"] == "memory" else None,
        generator=torch.Generator().manual_seed(a["seed"]),
    )
    start, curve = time.perf_counter(), []
    for epoch in range(a["epochs"]):
        gen = torch.Generator().manual_seed(a["seed"] * 1000 + epoch)
        for idx in shuffled_batches(len(train), 64, generator=gen, drop_last=True):
            learner.train_step({"image": train[idx]})
        curve.append(dg.test_mse(learner, test, a["T"], 64))
    seconds = time.perf_counter() - start

    def evals() -> dict[str, float]:
        out = {}
        for t in T_EVAL:
            try:
                out[str(t)] = dg.test_mse(learner, test, t, 64)
            except Exception:  # a diverged inference (non-finite energy) counts as NaN
                out[str(t)] = math.nan
        return out

    lam = dg.largest_curvature(learner, test[:64])
    fixed = evals()
    learner.lr_neurons = min(a["gamma"], 1.0 / lam) if lam > 0 else a["gamma"]
    stable = evals()
    rec = a | {"curve": curve, "evals": fixed, "evals_stable": stable, "lambda_max": lam}
    rec |= {"gamma_stable": learner.lr_neurons, "seconds": seconds}
    with log.open("a") as f:
        f.write(json.dumps(rec) + "\n")
    print(json.dumps({k: rec[k] for k in ("init", "T", "gamma", "lr", "mlr", "beta", "loss")}),
          {t: round(v, 4) for t, v in fixed.items()}, flush=True)  # fmt: skip
    return rec


def grid(log: Path) -> None:
    gammas, lrs = (0.02, 0.05, 0.1), (1e-3, 3e-3)
    for T in (2, 8):
        for loss in ("energy", "sweep"):
            for gamma in gammas:
                for mlr in (1e-3, 3e-3, 1e-2):
                    run(log, T=T, loss=loss, gamma=gamma, mlr=mlr)
    for T in (2, 4, 8):
        for gamma in gammas:
            for lr in lrs:
                for beta in (None, 0.5):
                    if T != 4 and lr == 1e-3 and beta is None:
                        continue  # done above
                    run(log, T=T, gamma=gamma, lr=lr, beta=beta)
            if T == 4:
                for mlr in (3e-3, 1e-2):
                    run(log, T=T, gamma=gamma, mlr=mlr)
        for init in ("zero", "null", "random"):
            for gamma in gammas:
                for lr in lrs:
                    run(log, T=T, init=init, gamma=gamma, lr=lr)


def best_settings(records: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """Per (init, T_train): the setting with the lowest mean MSE over T_eval 2..32 (seed 0,
    γ of training), among those finite and < 1 at every T_eval ≤ 64; memory: loss=energy."""
    best: dict[tuple[str, int], tuple[float, dict[str, Any]]] = {}
    for r in records:
        if (r["init"] == "memory" and r["loss"] != "energy") or r["init"] == "random":
            continue
        vals = [r["evals"][str(t)] for t in T_EVAL]
        if not all(v == v and v < 1 for v in vals):
            continue
        score = sum(vals[:5]) / 5
        cfg = {k: r[k] for k in ("gamma", "lr", "mlr", "beta")}
        if score < best.get((r["init"], r["T"]), (math.inf, {}))[0]:
            best[(r["init"], r["T"])] = (score, cfg)
    return {k: v[1] for k, v in sorted(best.items())}


def heatmap(records: list[dict[str, Any]], out: Path) -> None:
    import numpy as np
    from matplotlib.figure import Figure

    te, tt = [2, 4, 8, 16, 32], [2, 4, 8]
    inits = ("memory", "zero", "null", "random")
    grids = {}
    for init in inits:
        g = np.full((len(tt), len(te)), np.nan)
        for r in records:
            if (
                r["init"] != init
                or r["T"] not in tt
                or (init == "memory" and r["loss"] != "energy")
            ):
                continue
            for j, t in enumerate(te):
                v, i = r["evals"][str(t)], tt.index(r["T"])
                if v == v and not v >= g[i, j]:
                    g[i, j] = v
        grids[init] = g
    lo = float(np.nanmin([np.nanmin(g) for g in grids.values()]))
    hi = min(0.1, float(np.nanmax([np.nanmax(g) for g in grids.values()])))
    fig = Figure(figsize=(13, 3.4), layout="constrained")
    axes = fig.subplots(1, len(inits))
    for ax, init in zip(axes, inits, strict=True):
        g = grids[init]
        im = ax.imshow(g, vmin=lo, vmax=hi, cmap="viridis_r", origin="lower")
        ax.set_xticks(range(len(te)), [str(t) for t in te])
        ax.set_yticks(range(len(tt)), [str(t) for t in tt])
        ax.set(xlabel="T_eval", ylabel="T_train", title=init)
        for i in range(len(tt)):
            for j in range(len(te)):
                color = "w" if g[i, j] > (lo + hi) / 2 else "k"
                ax.text(j, i, f"{g[i, j]:.3f}", ha="center", va="center", fontsize=7, color=color)
    fig.colorbar(im, ax=axes, shrink=0.8, label="best test MSE over the grid")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("what", choices=["grid", "seeds", "heatmap"])
    p.add_argument("--log", type=Path, default=Path("runs/search/grid.jsonl"))
    p.add_argument("--from", dest="source", type=Path, default=None, help="grid records")
    p.add_argument("--out", type=Path, default=Path("runs/search/decoder_fig7_heatmap.png"))
    args = p.parse_args(argv)
    if args.what == "grid":
        args.log.parent.mkdir(parents=True, exist_ok=True)
        grid(args.log)
        return 0
    records = [json.loads(line) for line in (args.source or args.log).read_text().splitlines()]
    if args.what == "heatmap":
        heatmap(records, args.out)
        return 0
    args.log.parent.mkdir(parents=True, exist_ok=True)
    for seed in (0, 1, 2):
        for (init, T), cfg in best_settings(records).items():
            run(args.log, init=init, T=T, seed=seed, **cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
