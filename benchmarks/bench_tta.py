"""Time to accuracy: PC against tuned backprop, epochs interleaved in one process.

The setup of issue #28: FashionMNIST (60k / 10k; the embedded subset with --quick), the MLP
784-256×4-10 with GELU and a cross-entropy output, batch 300, the same initial weights for every
contender (seed), AdamW with weight decay 1e-4 (fused, for backprop as for PC). Backprop runs on
shuffled batches at three learning rates (5e-4, 1e-3, 2e-3), each twice (``--bp``): ``autograd``
(``pcgraph.BackpropTwin``, torch's own products) and, on the MLP, ``tuned`` (the hand-written
step of ``_tuned_bp.py``: every product on MKL or oneDNN, whichever is faster for its shape on
this machine, as pcgraph's own products may be; the same math, so the same accuracy per epoch
up to float32 rounding). The best backprop per target over all of them is the floor. PC
contenders
(``--pc``): ``hybrid2`` (hybrid init K = 2, T = 2, stream-aligned batches; ``hybrid1``: T = 1;
``hybrid3``: T = 3; ``hybrid1k1``: K = 1, T = 1; ``hybrid2k3``: K = 3, T = 2;
``ipc2``: T = 2 with a weight update after each step, the incremental schedule), ``forward8``
(forward init, T = 8), ``epc2`` (error-based PC from forward init, T = 2), each at every
AdamW learning rate of ``--pc-lrs`` (default 1e-3); the best PC per target is printed last.

``--model cnn``: the same race on ``topologies/cnn_fashion.yaml`` (two strided 3×3 convolutions
of 32 and 64 channels → dense 128 → 10, GELU, cross-entropy), images as [1, 28, 28].

Every epoch, each contender trains one epoch (timed: the training loop only) and is evaluated
on the test set (off the clock), in a rotating order so that no contender always runs first
after another's allocations. The time to a target accuracy is the training time accumulated to
the end of the first epoch at which the test accuracy reaches it (epoch granularity).

Prints a table and writes JSON (``--out``) with, per contender, the accuracy and cumulative
seconds per epoch, and ``tta_vs_bp`` per target (0.85 … 0.88): its time over the best backprop's
time to that target (null: not reached). Run it on an otherwise idle machine and name the CPU
and what ran beside it.

Usage::

    python benchmarks/bench_tta.py --threads 2 --out runs/bench/tta.json
    python benchmarks/bench_tta.py --quick          # the embedded subset, 2 epochs (smoke)
    python benchmarks/bench_tta.py --seeds 0,1,2 --pc hybrid2 --out runs/bench/tta_seeds.json

``--seeds`` runs one race per seed and prints the median over seeds of best PC / best BP per
target (JSON: ``median_best_pc_vs_bp`` and each seed's record under ``runs``): which epoch first
reaches a target moves with the seed, for backprop as for PC.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common
from _tuned_bp import TunedBackprop

import pcgraph as pc
from pcgraph.atomic import atomic_write_text
from pcgraph.data import embedded_dataset, load_dataset
from pcgraph.data.sampling import stream_aligned_batches

TARGETS = (0.85, 0.86, 0.87, 0.88)
BP_LRS = (5e-4, 1e-3, 2e-3)
PC = {
    "hybrid2": {"init": "hybrid", "T": 2, "algorithm": "pc", "aligned": True},
    "hybrid1": {"init": "hybrid", "T": 1, "algorithm": "pc", "aligned": True},
    "hybrid3": {"init": "hybrid", "T": 3, "algorithm": "pc", "aligned": True},
    "hybrid1k1": {"init": "hybrid", "K": 1, "T": 1, "algorithm": "pc", "aligned": True},
    "hybrid2k3": {"init": "hybrid", "K": 3, "T": 2, "algorithm": "pc", "aligned": True},
    "ipc2": {
        "init": "hybrid",
        "T": 2,
        "algorithm": "pc",
        "aligned": True,
        "schedule": "incremental",
    },
    "forward8": {"init": "forward", "T": 8, "algorithm": "pc", "aligned": False},
    "epc2": {"init": "forward", "T": 2, "algorithm": "epc", "aligned": False},
}


TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"
# the network, its input and output nodes and the shape of one input sample
MODELS: dict[str, tuple[str, str, str, tuple[int, ...]]] = {
    "mlp": ("mlp5 GELU (784-256×4-10)", "x", "y", (784,)),
    "cnn": ("cnn_fashion", "image", "label", (1, 28, 28)),
}


def model_spec(model: str) -> pc.GraphSpec:
    if model == "cnn":
        return pc.GraphSpec.from_yaml(TOPOLOGIES / "cnn_fashion.yaml")
    return pc.schema.mlp([784, 256, 256, 256, 256, 10], output_energy="cross_entropy")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="embedded subset, 2 epochs")
    p.add_argument("--model", choices=sorted(MODELS), default="mlp", help="the network raced")
    p.add_argument("--epochs", type=int, default=None, help="default 12 (--quick: 2)")
    p.add_argument("--pc", default="hybrid2,forward8,epc2", help=f"of {', '.join(PC)}")
    p.add_argument("--bp-lrs", default=",".join(str(v) for v in BP_LRS))
    p.add_argument(
        "--bp",
        default="autograd,tuned",
        help="backprop implementations, each at every --bp-lrs: autograd (BackpropTwin) and "
        "tuned (hand-written, the faster CPU library per product; MLP only)",
    )
    p.add_argument(
        "--pc-lrs",
        default="1e-3",
        help="AdamW lrs of the PC weights, comma-separated (each PC setting runs at each)",
    )
    p.add_argument("--lr-neurons", type=float, default=0.1, help="γ of PC inference")
    p.add_argument("--batch-size", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--seeds",
        default=None,
        help="comma-separated seeds: one race per seed (each interleaved in itself), then the "
        "median of best PC / best BP per target over the seeds (overrides --seed)",
    )
    p.add_argument("--out", default=None, help="JSON output file")
    _common.add_threads_arg(p)
    args = p.parse_args(argv)
    args.epochs = args.epochs or (2 if args.quick else 12)
    args.pc = [s for s in args.pc.split(",") if s]
    unknown = [s for s in args.pc if s not in PC]
    if unknown:
        p.error(f"unknown --pc {unknown}; valid: {', '.join(PC)}")
    args.bp_lrs = [float(v) for v in args.bp_lrs.split(",") if v]
    args.bp = [s for s in args.bp.split(",") if s]
    if not args.bp or set(args.bp) - {"autograd", "tuned"}:
        p.error(f"--bp {args.bp}: give autograd, tuned or both")
    if args.model != "mlp" and "tuned" in args.bp:  # the hand-written step is an MLP's
        if args.bp == ["tuned"]:
            p.error(
                f"--bp tuned: the hand-written backprop step is MLP-only, not --model {args.model}"
            )
        args.bp = [b for b in args.bp if b != "tuned"]
        print(f"--model {args.model}: backprop raced as autograd only (the tuned step is MLP-only)")
    args.pc_lrs = [float(v) for v in args.pc_lrs.split(",") if v]
    args.seeds = [int(v) for v in args.seeds.split(",") if v] if args.seeds else [args.seed]
    return args


def data(quick: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    if quick:
        train, test = embedded_dataset("train"), embedded_dataset("test")
    else:
        train, test = load_dataset("fashion-mnist", "train"), load_dataset("fashion-mnist", "test")
    return train.flat(), train.labels, test.flat(), test.labels


class Contender:
    """One trainer: ``epoch()`` trains one epoch and returns its seconds, ``accuracy()``."""

    def __init__(self, name: str, args: argparse.Namespace, spec: pc.GraphSpec, **kw: Any):
        self.name, self.args = name, args
        self.inp, self.out = MODELS[args.model][1:3]
        self.net = pc.compile(spec, seed=args.seed)
        self.kw = kw
        self.acc: list[float] = []
        self.seconds: list[float] = []
        self.diverged: str | None = None  # why training stopped (inference diverged), if it did
        self.gen = torch.Generator().manual_seed(args.seed)
        if kw.get("tuned"):
            weights = [k.weight.detach().clone().requires_grad_() for k in self.net.kernels]  # type: ignore[union-attr]
            biases = [k.bias.detach().clone().requires_grad_() for k in self.net.kernels]  # type: ignore[union-attr]
            self.tuned = TunedBackprop(
                weights,
                biases,
                activation="gelu",
                optimizer=torch.optim.AdamW(
                    [*weights, *biases], lr=kw["bp_lr"], weight_decay=1e-4, fused=True
                ),
            )
            # its per-shape library choices (a few timed products each) off the clock
            b = args.batch_size
            self.tuned.warm_up(
                torch.zeros(b, *MODELS[args.model][3]), torch.eye(10)[:1].expand(b, 10)
            )
        elif kw.get("bp_lr") is not None:
            self.model: Any = pc.BackpropTwin(self.net)
            # fused: the strongest floor, and the step PCLearner runs (see fuse_optimizer)
            self.opt = torch.optim.AdamW(
                self.model.parameters(), lr=kw["bp_lr"], weight_decay=1e-4, fused=True
            )
        else:
            self.learner = pc.PCLearner(
                self.net,
                init=kw["init"],
                init_options={"K": kw["K"]} if "K" in kw else None,
                T=kw["T"],
                lr_neurons=args.lr_neurons,
                algorithm=kw["algorithm"],
                schedule=kw.get("schedule", "standard"),
                optimizer=torch.optim.AdamW(
                    self.net.parameters(), lr=kw["pc_lr"], weight_decay=1e-4
                ),
            )

    def batches(self, labels: torch.Tensor) -> list[torch.Tensor]:
        b = self.args.batch_size
        if self.kw.get("aligned"):
            return stream_aligned_batches(labels, b, num_classes=10, generator=self.gen)
        order = torch.randperm(len(labels), generator=self.gen)
        return [order[i : i + b] for i in range(0, len(labels) - b + 1, b)]

    def epoch(self, x: torch.Tensor, y: torch.Tensor) -> float:
        batches = self.batches(y)  # drawn off the clock
        onehot = torch.nn.functional.one_hot(y, 10).float()
        start = time.perf_counter()
        for idx in batches:
            if self.kw.get("tuned"):
                self.tuned.update(x[idx], onehot[idx])
            elif self.kw.get("bp_lr") is not None:
                loss = torch.nn.functional.cross_entropy(self.model(x[idx]), y[idx])
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
            else:
                self.learner.train_step({self.inp: x[idx], self.out: onehot[idx]}, labels=y[idx])
        return time.perf_counter() - start

    @torch.no_grad()
    def accuracy(self, x: torch.Tensor, y: torch.Tensor) -> float:
        right = 0
        for i in range(0, len(y), 1000):
            xb = x[i : i + 1000]
            if self.kw.get("tuned"):
                out = self.tuned.forward(xb)
            elif self.kw.get("bp_lr") is not None:
                out = self.model(xb)
            else:
                out = self.learner.predict({self.inp: xb})[self.out]
            right += int((out.argmax(1) == y[i : i + 1000]).sum())
        return right / len(y)


def first_time(c: Contender, target: float) -> float | None:
    for acc, sec in zip(c.acc, c.seconds, strict=True):
        if acc >= target:
            return sec
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _common.set_threads(args.threads)
    xtr, ytr, xte, yte = data(args.quick)
    shape = MODELS[args.model][3]
    tensors = (xtr.reshape(-1, *shape), ytr, xte.reshape(-1, *shape), yte)
    runs = []
    for seed in args.seeds:
        one = argparse.Namespace(**{**vars(args), "seed": seed, "seeds": [seed]})
        if len(args.seeds) > 1:
            print(f"\n--- seed {seed} ---", flush=True)
        runs.append(race(one, *tensors))
    payload = runs[0] if len(runs) == 1 else over_seeds(args, runs)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(args.out), json.dumps(payload, indent=2))
        print(f"written to {args.out}")
    return 0


def over_seeds(args: argparse.Namespace, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The races of several seeds and, per target, the median over seeds of best PC / best BP
    (a seed where PC or backprop never reached the target counts as +inf: the median says
    "never" when most seeds never reached it)."""
    median: dict[str, float | None] = {}
    for key in (f"{t:.2f}" for t in TARGETS):
        values = sorted(
            math.inf if r["best_pc_vs_bp"][key] is None else r["best_pc_vs_bp"][key] for r in runs
        )
        mid = statistics.median(values)
        median[key] = None if math.isinf(mid) or math.isnan(mid) else mid
    print(
        f"\nseeds {', '.join(str(s) for s in args.seeds)}: best PC × best BP per seed: "
        + "; ".join(
            " / ".join(f"{v:.2f}" if v is not None else "—" for v in r["best_pc_vs_bp"].values())
            for r in runs
        )
    )
    print(
        "median over seeds: "
        + " / ".join(f"{v:.2f}" if v is not None else "—" for v in median.values())
    )
    return {
        "benchmark": "bench_tta",
        "model": runs[0]["model"],
        "config": vars(args),
        "machine": runs[0]["machine"],
        "targets": list(TARGETS),
        "seeds": args.seeds,
        "median_best_pc_vs_bp": median,
        "runs": runs,
    }


def race(
    args: argparse.Namespace,
    xtr: torch.Tensor,
    ytr: torch.Tensor,
    xte: torch.Tensor,
    yte: torch.Tensor,
) -> dict[str, Any]:
    """One race at ``args.seed``: every contender, epochs interleaved; prints its table and
    returns its record."""
    torch.manual_seed(args.seed)
    spec = model_spec(args.model)
    contenders = [
        Contender(
            f"{'tuned ' if kind == 'tuned' else ''}bp lr={lr:g}",
            args,
            spec,
            bp_lr=lr,
            tuned=kind == "tuned",
        )
        for kind in args.bp
        for lr in args.bp_lrs
    ]
    contenders += [
        Contender(
            f"pc {n}" + (f" lr={lr:g}" if len(args.pc_lrs) > 1 else ""),
            args,
            spec,
            **PC[n],
            pc_lr=lr,
        )
        for n in args.pc
        for lr in args.pc_lrs
    ]
    for e in range(args.epochs):
        k = e % len(contenders)
        for c in contenders[k:] + contenders[:k]:  # rotate who goes first
            if c.diverged:
                continue
            try:
                seconds = c.epoch(xtr, ytr)
            except pc.EnergyError as err:  # a setting that diverges is a result, not a crash
                c.diverged = f"epoch {e + 1}: {err}"
                print(f"{c.name} stopped, {c.diverged}", flush=True)
                continue
            c.seconds.append((c.seconds[-1] if c.seconds else 0.0) + seconds)
            c.acc.append(c.accuracy(xte, yte))
        print(
            f"epoch {e + 1}: "
            + ", ".join(f"{c.name} {c.acc[-1]:.4f}" for c in contenders if not c.diverged),
            flush=True,
        )
    bps = [c for c in contenders if c.kw.get("bp_lr") is not None]
    best_bp = {
        t: min((s for s in (first_time(c, t) for c in bps) if s is not None), default=None)
        for t in TARGETS
    }
    rows = []
    for c in contenders:
        times = {t: first_time(c, t) for t in TARGETS}
        ratio = {
            f"{t:.2f}": (None if times[t] is None or best_bp[t] is None else times[t] / best_bp[t])
            for t in TARGETS
        }
        rows.append(
            {
                "name": c.name,
                "accuracy": c.acc,
                "seconds": c.seconds,
                "best_accuracy": max(c.acc, default=None),
                "seconds_per_epoch": c.seconds[-1] / len(c.seconds) if c.seconds else None,
                "diverged": c.diverged,
                "time_to": {f"{t:.2f}": times[t] for t in TARGETS},
                "tta_vs_bp": ratio,
            }
        )
    print(
        f"\n{'contender':<22} {'best acc':>8} {'s/epoch':>8} "
        + " ".join(f"{'to ' + format(t, '.2f'):>9}" for t in TARGETS)
        + "   × best BP"
    )
    for r in rows:
        cells = " ".join(
            f"{r['time_to'][f'{t:.2f}']:9.1f}"
            if r["time_to"][f"{t:.2f}"] is not None
            else f"{'never':>9}"
            for t in TARGETS
        )
        ratios = " / ".join(f"{v:.2f}" if v is not None else "—" for v in r["tta_vs_bp"].values())
        if r["seconds_per_epoch"] is None:
            head = f"{r['name']:<22} {'—':>8} {'—':>8}"
        else:
            head = f"{r['name']:<22} {r['best_accuracy']:8.4f} {r['seconds_per_epoch']:8.2f}"
        stop = f"   (diverged, {r['diverged'].split(':')[0]})" if r["diverged"] else ""
        print(f"{head} {cells}   {ratios}{stop}")
    pcs = [r for r in rows if r["name"].startswith("pc ")]
    best_pc = {
        key: min(
            (r["tta_vs_bp"][key] for r in pcs if r["tta_vs_bp"][key] is not None), default=None
        )
        for key in (f"{t:.2f}" for t in TARGETS)
    }
    print(
        "best PC × best BP: "
        + " / ".join(f"{v:.2f}" if v is not None else "—" for v in best_pc.values())
    )
    return {
        "benchmark": "bench_tta",
        "model": MODELS[args.model][0],
        "config": vars(args),
        "machine": {
            "cpu": _common._cpu_name(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "targets": list(TARGETS),
        "best_bp_seconds": {f"{t:.2f}": v for t, v in best_bp.items()},
        "best_pc_vs_bp": best_pc,
        "contenders": rows,
    }


if __name__ == "__main__":
    sys.exit(main())
