"""Would compiling the whole PC update beat the eager loop on this CPU? (issue #11, item 3)

One weight update of the 784-128-128-128-128-10 MLP (forward sweep, T SGD steps on the hidden
states, weight gradients at x(T), fused AdamW), in three forms timed round-robin in one process:

- ``eager_fn``: the update written functionally (new tensors, no buffers), run eagerly;
- ``compiled``: the same function through ``torch.compile(fullgraph=True, dynamic=False)``, with
  oneDNN's linear wrapped as a ``torch.library.custom_op`` so that inductor keeps it (inductor
  has no lowering for ``mkldnn._linear_pointwise`` with plain weights);
- ``tuned``: the tuned eager loop of ``_tuned.py`` (the floor of bench_peers/bench_step).

It prints the compile time and the medians per update, and ``compiled / tuned``. Not part of
the test suite; see docs/performance.md ("Compiled steps") for what it measured.

    python benchmarks/bench_compile_update.py [--batch 256] [--act tanh] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tuned import TunedMLP

SIZES = [784, 128, 128, 128, 128, 10]
_ONEDNN = torch.ops.mkldnn._linear_pointwise


@torch.library.custom_op("pcgraph_bench::linear", mutates_args=())
def _linear(a: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    if a.shape[0] * w.shape[0] * w.shape[1] >= 1 << 21:
        return _ONEDNN(a.contiguous(), w, bias, "none", [], "")
    out = a @ w.t()
    return out if bias is None else out + bias


@_linear.register_fake
def _(a: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return a.new_empty(a.shape[0], w.shape[0])


def make_update(act: str, T: int, lr: float):  # type: ignore[no-untyped-def]
    def sig(x: torch.Tensor) -> torch.Tensor:
        return {"tanh": torch.tanh, "relu": torch.relu}.get(act, torch.nn.functional.gelu)(x)

    def dsig(m: torch.Tensor, s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if act == "tanh":
            return m * (1 - s * s)
        if act == "relu":
            return m * (x > 0)
        return torch.ops.aten.gelu_backward(m, x)

    def update(W: list[torch.Tensor], b: list[torch.Tensor], x0: torch.Tensor, y: torch.Tensor):  # type: ignore[no-untyped-def]
        L = len(W)
        mu1 = _linear(x0, W[0], b[0])
        xs, ss = [mu1], [sig(mu1)]
        for l in range(1, L - 1):
            xs.append(_linear(ss[-1], W[l], b[l]))
            ss.append(sig(xs[-1]))
        es = [torch.zeros_like(x) for x in xs] + [y - _linear(ss[-1], W[L - 1], b[L - 1])]
        for _ in range(T):
            xs = [
                xs[l] + lr * (dsig(_linear(es[l + 1], W[l + 1].t(), None), ss[l], xs[l]) - es[l])
                for l in range(L - 1)
            ]
            ss = [sig(x) for x in xs]
            es = [
                xs[0] - mu1,
                *[xs[l] - _linear(ss[l - 1], W[l], b[l]) for l in range(1, L - 1)],
                y - _linear(ss[-1], W[L - 1], b[L - 1]),
            ]
        inputs = [x0, *ss]
        return (
            [-_linear(es[l].t(), inputs[l].t(), None) for l in range(L)],
            [-es[l].sum(0) for l in range(L)],
        )

    return update


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--act", default="tanh", choices=["tanh", "relu", "gelu"])
    ap.add_argument("--T", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    W = [torch.randn(SIZES[i + 1], SIZES[i], generator=g) * 0.05 for i in range(5)]
    b = [torch.zeros(SIZES[i + 1]) for i in range(5)]
    x0, y = torch.rand(args.batch, 784, generator=g), torch.rand(args.batch, 10, generator=g)
    update = make_update(args.act, args.T, 0.1)
    compiled = torch.compile(update, dynamic=False, fullgraph=True)

    def stepper(fn):  # type: ignore[no-untyped-def]
        params = [w.clone() for w in W] + [c.clone() for c in b]
        for p in params:
            p.grad = torch.zeros_like(p)
        opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4, fused=True)

        def step() -> None:
            with torch.no_grad():
                gw, gb = fn(params[:5], params[5:], x0, y)
                torch._foreach_copy_([p.grad for p in params], [*gw, *gb])
            opt.step()

        return step

    tw, tb = [w.clone() for w in W], [c.clone() for c in b]
    topt = torch.optim.AdamW([*tw, *tb], lr=1e-3, weight_decay=1e-4, fused=True)
    tuned = TunedMLP(tw, tb, activation=args.act, T=args.T, lr_neurons=0.1, optimizer=topt)
    runs = {
        "eager_fn": stepper(update),
        "compiled": stepper(compiled),
        "tuned": lambda: tuned.update(x0, y),
    }
    start = time.perf_counter()
    runs["compiled"]()
    print(f"compile (first update): {time.perf_counter() - start:.1f} s")
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(3):
        for f in runs.values():
            f()
    for i in range(args.repeats):
        names = list(runs)[i % 3 :] + list(runs)[: i % 3]  # rotate the order each round
        for name in names:
            t = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    print(f"B={args.batch} {args.act} T={args.T} threads={args.threads}, medians (ms):")
    for k, v in med.items():
        print(f"  {k:9s} {v:7.2f}")
    print(f"compiled / tuned = {med['compiled'] / med['tuned']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
