"""The studies of docs/results.md §8: ePC against PC, and learned precision.

Both train the MLP 784-256×4-10 (GELU, cross-entropy output) of ``benchmarks/bench_tta.py`` on
FashionMNIST (``--train`` / ``--test`` images drawn from the full set, or the embedded subset
when the full set is absent), batch 300, AdamW (lr 1e-3, weight decay 1e-4), the same initial
weights (seed) for every run, and record per epoch the test accuracy and the training seconds
(the loop only; evaluation off the clock).

- ``epc``: algorithm ∈ {pc, epc} × init ∈ {forward, hybrid} × T ∈ {1, 2, 4, 8}, γ = 0.1.
- ``precision``: the four hidden nodes with ``precision: learnable`` or fixed at 1, with forward
  init at T = 8 and hybrid at T = 2, the log-precisions trained by the weights' AdamW or in a
  group of their own (lr 0.05); also records each hidden node's learned w and its optimum
  N / ‖ε‖² at the last batch's errors.

    python scripts/study_algorithms.py epc --out docs/data/results/study_epc.json
    python scripts/study_algorithms.py precision --out docs/data/results/study_precision.json

Run it on an otherwise idle machine: the seconds are wall-clock.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path
from typing import Any

import torch

import pcgraph as pc
from pcgraph.data import embedded_dataset, load_dataset
from pcgraph.data.sampling import stream_aligned_batches
from pcgraph.schema.io import spec_to_dict

SIZES = [784, 256, 256, 256, 256, 10]
HIDDEN = ("h1", "h2", "h3", "h4")


def data(n_train: int, n_test: int, seed: int) -> tuple[torch.Tensor, ...]:
    try:
        train, test = load_dataset("fashion-mnist", "train"), load_dataset("fashion-mnist", "test")
    except Exception:  # no full set here: the embedded subset
        train, test = embedded_dataset("train"), embedded_dataset("test")
    g = torch.Generator().manual_seed(seed)
    if n_train < len(train):
        train = train.subset(n_train, generator=g)
    if n_test < len(test):
        test = test.subset(n_test, generator=g)
    return train.flat(), train.labels, test.flat(), test.labels


def spec(learned: bool) -> pc.GraphSpec:
    base = pc.mlp(SIZES, activation="gelu", output_energy="cross_entropy")
    if not learned:
        return base
    d = spec_to_dict(base)
    for node in d["nodes"]:
        if node["name"] in HIDDEN:
            node["precision"] = "learnable"
    return pc.GraphSpec.from_dict(d)


def optimizer(net: pc.PCNetwork, precision_lr: float | None) -> torch.optim.Optimizer:
    """AdamW (lr 1e-3, weight decay 1e-4); the log-precisions in a group of their own at
    ``precision_lr`` (no decay) when given."""
    if precision_lr is None:
        return torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    logs = list(net.log_precision.parameters())
    ids = {id(p) for p in logs}
    rest = [p for p in net.parameters() if id(p) not in ids]
    return torch.optim.AdamW(
        [{"params": rest}, {"params": logs, "lr": precision_lr, "weight_decay": 0.0}],
        lr=1e-3,
        weight_decay=1e-4,
    )


def run(
    cfg: dict[str, Any], x: torch.Tensor, y: torch.Tensor, xt: torch.Tensor, yt: torch.Tensor, args
) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    net = pc.compile(spec(cfg.get("learned", False)), seed=args.seed)
    learner = pc.PCLearner(
        net,
        init=cfg["init"],
        T=cfg["T"],
        lr_neurons=args.lr_neurons,
        algorithm=cfg.get("algorithm", "pc"),
        optimizer=optimizer(net, cfg.get("precision_lr")),
    )
    gen = torch.Generator().manual_seed(args.seed)
    onehot = torch.nn.functional.one_hot(y, 10).float()
    acc, seconds, total, status = [], [], 0.0, "ok"
    for _ in range(args.epochs):
        if cfg["init"] == "hybrid":
            batches = stream_aligned_batches(y, 300, num_classes=10, generator=gen)
        else:
            order = torch.randperm(len(y), generator=gen)
            batches = [order[i : i + 300] for i in range(0, len(y) - 299, 300)]
        start = time.perf_counter()
        try:
            for idx in batches:
                learner.train_step({"x": x[idx], "y": onehot[idx]}, labels=y[idx])
        except pc.PCGraphError as exc:  # a divergence: recorded, not hidden
            status = f"stopped: {type(exc).__name__}: {str(exc)[:160]}"
            break
        total += time.perf_counter() - start
        seconds.append(round(total, 2))
        with torch.no_grad():
            right = sum(
                int(
                    (
                        learner.predict({"x": xt[i : i + 1000]})["y"].argmax(1) == yt[i : i + 1000]
                    ).sum()
                )
                for i in range(0, len(yt), 1000)
            )
        acc.append(round(right / len(yt), 4))
        print(f"  {cfg} epoch {len(acc)}: acc {acc[-1]:.4f}, {total:.1f} s", flush=True)
    row = {**cfg, "accuracy": acc, "seconds": seconds, "status": status}
    if cfg.get("learned"):
        w = {h: net.precision(h) for h in HIDDEN}
        row["learned_w"] = {h: round(v, 4) for h, v in w.items()}
        try:
            row["optimum_w"] = optimum(learner, x[:300], onehot[:300], y[:300])
        except pc.PCGraphError as exc:
            row["optimum_w"] = f"not computed: {type(exc).__name__}"
    return row


def optimum(
    learner: pc.PCLearner, x: torch.Tensor, onehot: torch.Tensor, y: torch.Tensor
) -> dict[str, float]:
    """N / ‖ε‖² of each hidden node after inference on one batch: where ∂E/∂s = 0."""
    net = learner.net
    states = learner.infer({"x": x, "y": onehot}, train=True, labels=y).states.clone()
    found = {}
    with torch.no_grad():
        for h in HIDDEN:
            i = net.node(h).index
            eps = states[:, net.nodes[i].cols] - net.prediction(states, i).reshape(len(x), -1)
            found[h] = round(eps.numel() / float(eps.square().sum()), 2)
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("study", choices=("epc", "precision"))
    p.add_argument("--train", type=int, default=20000)
    p.add_argument("--test", type=int, default=10000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr-neurons", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    x, y, xt, yt = data(args.train, args.test, args.seed)
    if args.study == "epc":
        grid = [
            {"algorithm": a, "init": i, "T": t}
            for a, i, t in itertools.product(("pc", "epc"), ("forward", "hybrid"), (1, 2, 4, 8))
        ]
    else:
        grid = [
            {"init": i, "T": t, **extra}
            for (i, t), extra in itertools.product(
                (("forward", 8), ("hybrid", 2)),
                ({"learned": False}, {"learned": True}, {"learned": True, "precision_lr": 0.05}),
            )
        ]
    rows = [run(cfg, x, y, xt, yt, args) for cfg in grid]
    meta = {
        "study": args.study,
        "train": len(y),
        "test": len(yt),
        "epochs": args.epochs,
        "lr_neurons": args.lr_neurons,
        "threads": args.threads,
        "seed": args.seed,
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
