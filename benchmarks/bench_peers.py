"""One PC weight update of an MLP in pcgraph, next to PCX, a tuned hand-written torch loop and BP.

All of them run the same network, rule, initial weights and batch order (the issue's harness):
``pc.mlp(sizes, activation=…, output_energy="gaussian")``, forward init, T steps of SGD on the
hidden states (γ = ``--lr-neurons``), then one AdamW step (lr 1e-3, weight decay 1e-4) on
∂E/∂θ at x(T). The contenders:

- ``pcgraph``: ``PCLearner(net, init="forward", …).train_step`` — the public API as a user calls it,
  with a default-built ``AdamW`` (which ``PCLearner`` runs fused, see ``fuse_optimizer``);
- ``tuned``: :class:`_tuned.TunedMLP`, the strongest plain-torch floor (preallocated, in place,
  σ computed once per node and step, no energies);
- ``pcx``: PCX 0.6.3 (JAX/XLA, jit-compiled) run by ``peers/pcx_mlp.py`` in its own venv
  (``bash benchmarks/peers/setup_pcx.sh`` creates it); skipped with a message when absent;
- ``bp``: a backprop step of the same MLP (``nn.Sequential``, summed squared error, AdamW);
- ``tuned_bp``: the same backprop step by hand (:class:`_tuned_bp.TunedBackprop`: preallocated,
  every product on MKL or oneDNN, whichever is faster for its shape here, as pcgraph's and the
  tuned loop's products are). On an AVX-512 CPU, where oneDNN runs these products up to 2×
  faster than MKL, it is the honest backprop floor; ``vs tBP`` is pcgraph over it.

The tuned loop and both BPs use ``AdamW(fused=True)``: the strongest floor, and the same optimizer
kernel pcgraph ends up with.

Timing: one *pass* = the same S minibatches in order. pcgraph, tuned and BP are timed in one
process, interleaved round-robin (one pass of each per round, the order rotating), so that they
share the machine's noise; PCX runs in its own process right after, with the same thread count,
and its compile time (the first update, jit included) is reported apart. Ratios are paired
within a repeat (repeat r of pcgraph over repeat r of the other), and the median over repeats is
printed. Before timing, a correctness check: after one pass from the same weights, pcgraph's and
the tuned loop's weights (and PCX's when present) must agree to 1e-4.

Threads: ``--threads 1,2`` runs every configuration at each count (torch.set_num_threads; XLA
through ``peers/pcx_mlp.py --threads``). On a busy 2-core machine two threads can be tens of
times slower (OpenMP threads spin): benchmark on an idle machine.

Usage (from the repository root)::

    python benchmarks/bench_peers.py                      # tanh+gelu, B 64/256, T 8, 1-2 threads
    python benchmarks/bench_peers.py --full    # tanh/relu/gelu × B 64/256/1024 × T 4/8/16
    python benchmarks/bench_peers.py --json out.json      # also write the figures as JSON
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment
from _tuned import TunedMLP
from _tuned_bp import TunedBackprop

import pcgraph as pc

ROOT = Path(__file__).resolve().parent.parent
PCX_PYTHON = ROOT / ".venv-pcx" / "bin" / "python"
PCX_RUNNER = Path(__file__).resolve().parent / "peers" / "pcx_mlp.py"
SIZES = [784, 128, 128, 128, 128, 10]
LR, WEIGHT_DECAY = 1e-3, 1e-4


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--full", action="store_true", help="the whole grid of the issue")
    p.add_argument("--activations", default=None, help="comma-separated (default tanh,gelu)")
    p.add_argument("--batch", default=None, help="comma-separated batch sizes (default 64,256)")
    p.add_argument("--T", default=None, help="comma-separated T (default 8)")
    p.add_argument("--threads", default="1,2", help="comma-separated torch/XLA thread counts")
    p.add_argument("--steps", type=int, default=20, help="minibatches S per pass")
    p.add_argument("--repeats", type=int, default=3, help="timed passes per contender")
    p.add_argument("--lr-neurons", type=float, default=0.1, help="γ")
    p.add_argument("--no-pcx", action="store_true", help="skip PCX even when installed")
    p.add_argument("--json", default=None, help="write the figures to this JSON file")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    grid = (
        {"activations": "tanh,relu,gelu", "batch": "64,256,1024", "T": "4,8,16"}
        if args.full
        else {"activations": "tanh,gelu", "batch": "64,256", "T": "8"}
    )
    for key, value in grid.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.activations = args.activations.split(",")
    args.batch = [int(b) for b in args.batch.split(",")]
    args.T = [int(t) for t in args.T.split(",")]
    args.threads = [int(t) for t in args.threads.split(",")]
    return args


def make_problem(batch: int, steps: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """S minibatches of FashionMNIST-like data: real images when available, else embedded."""
    from pcgraph.data import embedded_dataset

    data = embedded_dataset("train")
    x = data.flat()
    y = torch.nn.functional.one_hot(data.labels, 10).to(x.dtype)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(x), (steps, batch), generator=g)
    return x[idx], y[idx]


class Contenders:
    """pcgraph, the tuned loop and BP from the same initial weights."""

    def __init__(
        self,
        activation: str,
        T: int,
        lr_neurons: float,
        seed: int,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        spec = pc.mlp(SIZES, activation=activation, output_energy="gaussian")
        self.net = pc.compile(spec, seed=seed, dtype=dtype)
        kernels = list(self.net.kernels)
        self.init_w = [k.weight.detach().clone() for k in kernels]  # type: ignore[union-attr]
        self.init_b = [k.bias.detach().clone() for k in kernels]  # type: ignore[union-attr]
        self.learner = pc.PCLearner(
            self.net,
            init="forward",
            T=T,
            lr_neurons=lr_neurons,
            optimizer=torch.optim.AdamW(self.net.parameters(), lr=LR, weight_decay=WEIGHT_DECAY),
        )
        self.tw = [nn.Parameter(w.clone()) for w in self.init_w]
        self.tb = [nn.Parameter(b.clone()) for b in self.init_b]
        self.tuned = TunedMLP(
            self.tw,
            self.tb,
            activation=activation,
            T=T,
            lr_neurons=lr_neurons,
            optimizer=torch.optim.AdamW(
                [*self.tw, *self.tb], lr=LR, weight_decay=WEIGHT_DECAY, fused=True
            ),
        )
        self.bw = [nn.Parameter(w.clone()) for w in self.init_w]
        self.bb = [nn.Parameter(b.clone()) for b in self.init_b]
        self.tuned_bp = TunedBackprop(
            self.bw,
            self.bb,
            activation=activation,
            loss="sse",
            optimizer=torch.optim.AdamW(
                [*self.bw, *self.bb], lr=LR, weight_decay=WEIGHT_DECAY, fused=True
            ),
        )
        act = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU}[activation]
        layers: list[nn.Module] = []
        for i, (w, b) in enumerate(zip(self.init_w, self.init_b, strict=True)):
            lin = nn.Linear(w.shape[1], w.shape[0], dtype=dtype)
            with torch.no_grad():
                lin.weight.copy_(w)
                lin.bias.copy_(b)
            layers.append(lin)
            if i < len(self.init_w) - 1:
                layers.append(act())
        self.bp = nn.Sequential(*layers)
        self.bp_opt = torch.optim.AdamW(
            self.bp.parameters(), lr=LR, weight_decay=WEIGHT_DECAY, fused=True
        )

    def pcgraph_pass(self, xs: torch.Tensor, ys: torch.Tensor) -> None:
        for x, y in zip(xs, ys, strict=True):
            self.learner.train_step({"x": x, "y": y})

    def tuned_pass(self, xs: torch.Tensor, ys: torch.Tensor) -> None:
        for x, y in zip(xs, ys, strict=True):
            self.tuned.update(x, y)

    def bp_pass(self, xs: torch.Tensor, ys: torch.Tensor) -> None:
        for x, y in zip(xs, ys, strict=True):
            self.bp_opt.zero_grad(set_to_none=True)
            (0.5 * (self.bp(x) - y).square().sum()).backward()
            self.bp_opt.step()

    def tuned_bp_pass(self, xs: torch.Tensor, ys: torch.Tensor) -> None:
        for x, y in zip(xs, ys, strict=True):
            self.tuned_bp.update(x, y)

    def pcgraph_weights(self) -> list[torch.Tensor]:
        return [p.detach() for k in self.net.kernels for p in (k.weight, k.bias)]  # type: ignore[union-attr]

    def initial(self) -> list[torch.Tensor]:
        return [p for pair in zip(self.init_w, self.init_b, strict=True) for p in pair]

    def tuned_weights(self) -> list[torch.Tensor]:
        return [p.detach() for pair in zip(self.tw, self.tb, strict=True) for p in pair]


def max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((p - q).abs().max()) for p, q in zip(a, b, strict=True))


class PcxServer:
    """PCX in its own venv on the same problem, answering one timed pass per request, so that
    its passes interleave with the torch contenders' (see ``peers/pcx_mlp.py --serve``)."""

    def __init__(
        self,
        cont: Contenders,
        xs: torch.Tensor,
        ys: torch.Tensor,
        cfg: dict[str, Any],
        threads: int,
    ) -> None:
        import numpy as np

        self.tmp = tempfile.TemporaryDirectory()
        problem = Path(self.tmp.name, "p.npz")
        self.out, wout = Path(self.tmp.name, "r.json"), Path(self.tmp.name, "w.npz")
        arrays = {f"W{i + 1}": w.numpy() for i, w in enumerate(cont.init_w)}
        arrays |= {f"b{i + 1}": b.numpy() for i, b in enumerate(cont.init_b)}
        np.savez(problem, x=xs.numpy(), y=ys.numpy(), config=json.dumps(cfg), **arrays)
        cmd = [str(PCX_PYTHON), str(PCX_RUNNER), "--problem", str(problem), "--out", str(self.out)]
        cmd += ["--weights-out", str(wout), "--threads", str(threads), "--serve"]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"pcx runner did not start: {line!r} {err.strip()[-800:]}")
        w = np.load(wout)
        n = len(cont.init_w)
        self.weights = [torch.from_numpy(w[f"{k}{i + 1}"]) for i in range(n) for k in ("W", "b")]
        self.steps = xs.shape[0]

    def timed_pass(self) -> float:
        """Seconds per update of one pass, measured inside the PCX process."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("pass\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline()) / self.steps

    def close(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()
        self.proc.wait(timeout=120)
        result: dict[str, Any] = json.loads(self.out.read_text())
        self.tmp.cleanup()
        return result


def paired(a: list[float], b: list[float]) -> float:
    return float(statistics.median(x / y for x, y in zip(a, b, strict=True)))


def correctness(activation: str, T: int, args: argparse.Namespace) -> float:
    """max |ΔW| between pcgraph and the tuned loop after 3 updates from the same weights, in
    float64 (in float32, Adam turns rounding in near-zero gradients into lr-sized steps)."""
    xs, ys = make_problem(16, 3, args.seed)
    with _default_dtype(torch.float64):
        cont = Contenders(activation, T, args.lr_neurons, args.seed, dtype=torch.float64)
        cont.pcgraph_pass(xs.double(), ys.double())
        cont.tuned_pass(xs.double(), ys.double())
    return max_diff(cont.pcgraph_weights(), cont.tuned_weights())


class _default_dtype:
    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype

    def __enter__(self) -> None:
        self.saved = torch.get_default_dtype()
        torch.set_default_dtype(self.dtype)

    def __exit__(self, *exc: object) -> None:
        torch.set_default_dtype(self.saved)


def bench_config(
    activation: str, batch: int, T: int, threads: int, args: argparse.Namespace
) -> dict[str, Any]:
    torch.set_num_threads(threads)
    check: dict[str, float] = {
        "pcgraph_vs_tuned_max_weight_diff_f64": correctness(activation, T, args)
    }
    xs, ys = make_problem(batch, args.steps, args.seed)
    cont = Contenders(activation, T, args.lr_neurons, args.seed)
    fns: dict[str, Any] = {
        "pcgraph": lambda: cont.pcgraph_pass(xs, ys),
        "tuned": lambda: cont.tuned_pass(xs, ys),
        "bp": lambda: cont.bp_pass(xs, ys),
        "tuned_bp": lambda: cont.tuned_bp_pass(xs, ys),
    }
    pcx = None
    if not args.no_pcx and PCX_PYTHON.exists():
        cfg = {
            "activation": activation,
            "T": T,
            "lr_neurons": args.lr_neurons,
            "lr": LR,
            "weight_decay": WEIGHT_DECAY,
            "warmup": 1,
        }
        pcx = PcxServer(cont, xs, ys, cfg, threads)
    # the first pass of pcgraph from the initial weights, next to PCX's (float32: the updates
    # agree to rounding, amplified by Adam where gradients are near zero: a sanity check)
    for fn in fns.values():
        fn()  # warm-up pass (pcgraph's first pass is compared with PCX's)
    if pcx is not None:
        diff = [a - b for a, b in zip(cont.pcgraph_weights(), pcx.weights, strict=True)]
        moved = [a - b for a, b in zip(cont.pcgraph_weights(), cont.initial(), strict=True)]
        num = sum(float(d.abs().sum()) for d in diff)
        check["pcgraph_vs_pcx_mean_weight_diff_over_mean_update"] = num / sum(
            float(m.abs().sum()) for m in moved
        )
    times: dict[str, list[float]] = {n: [] for n in [*fns, *(["pcx"] if pcx else [])]}
    names = list(times)
    for r in range(args.repeats):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            if n == "pcx":
                assert pcx is not None
                times[n].append(pcx.timed_pass())
                continue
            t0 = time.perf_counter()
            fns[n]()
            times[n].append((time.perf_counter() - t0) / args.steps)
    row: dict[str, Any] = {
        "activation": activation,
        "batch": batch,
        "T": T,
        "threads": threads,
        "seconds_per_update": {n: statistics.median(v) for n, v in times.items()},
        "pcgraph_vs_tuned": paired(times["pcgraph"], times["tuned"]),
        "pcgraph_vs_bp": paired(times["pcgraph"], times["bp"]),
        "pcgraph_vs_tuned_bp": paired(times["pcgraph"], times["tuned_bp"]),
        "pcgraph_vs_pcx": None,
        "check": check,
    }
    if pcx is not None:
        info = pcx.close()
        row["pcgraph_vs_pcx"] = paired(times["pcgraph"], times["pcx"])
        row["pcx_vs_tuned"] = paired(times["pcx"], times["tuned"])
        row["pcx_compile_seconds"] = info.get("compile_seconds")
        row["pcx_versions"] = {k: info.get(k) for k in ("pcx_version", "jax_version")}
    return row


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.no_pcx and not PCX_PYTHON.exists():
        print(
            f"PCX is not installed ({PCX_PYTHON} missing): run `bash benchmarks/peers/"
            "setup_pcx.sh` to compare with it; timing pcgraph, the tuned loop and BP only."
        )
    rows = []
    head = f"{'act':>5} {'B':>5} {'T':>3} {'thr':>3} │ {'vs PCX':>7} {'vs tuned':>8} {'vs BP':>6}"
    head += f" {'vs tBP':>6}"
    head += f" │ {'pcgraph ms':>10} {'tuned ms':>9} {'pcx ms':>7} │ check tuned / pcx"
    print(head)
    for act, b, T, thr in itertools.product(args.activations, args.batch, args.T, args.threads):
        row = bench_config(act, b, T, thr, args)
        rows.append(row)
        s = row["seconds_per_update"]
        vs_pcx = f"{row['pcgraph_vs_pcx']:7.2f}" if row["pcgraph_vs_pcx"] else f"{'—':>7}"
        pcx_ms = f"{s['pcx'] * 1e3:7.2f}" if "pcx" in s else f"{'—':>7}"
        chk = row["check"]
        diffs = f"{chk['pcgraph_vs_tuned_max_weight_diff_f64']:.1e}"
        if "pcgraph_vs_pcx_mean_weight_diff_over_mean_update" in chk:
            diffs += f" / {chk['pcgraph_vs_pcx_mean_weight_diff_over_mean_update']:.1e}"
        print(
            f"{act:>5} {b:>5} {T:>3} {thr:>3} │ {vs_pcx} {row['pcgraph_vs_tuned']:8.2f} "
            f"{row['pcgraph_vs_bp']:6.2f} {row['pcgraph_vs_tuned_bp']:6.2f} │ "
            f"{s['pcgraph'] * 1e3:10.2f} {s['tuned'] * 1e3:9.2f} "
            f"{pcx_ms} │ {diffs}",
            flush=True,
        )
    if args.json:
        payload = {"environment": environment(torch.device("cpu")), "rows": rows}
        payload["environment"]["loadavg_at_end"] = os.getloadavg()
        Path(args.json).write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
