"""pcgraph's own weight update with each inference step through ``torch.compile`` against the
eager update, with pcgraph's native activation kernels inside the compiled graph as
``torch.library`` custom ops (:mod:`pcgraph.ops.native_ops`).

One weight update of ``pc.mlp`` (default 784-128×4-10) under ``PCLearner``: forward sweep, T
inference steps, weight gradients, SGD. ``eager`` is the default learner, ``compiled`` the same
learner with ``compile_step=True`` (each step's errors, ∂E/∂x and SGD update compiled; the
sweep, weight gradients and optimizer stay eager), ``whole`` the whole update through
:class:`pcgraph.engine.compiled_update.CompiledUpdate` (clamp, sweep, T steps, weight gradients
in two graphs, the optimizer's step compiled on its own). Timed round-robin in one process;
prints the compile times, the median ms per update, each over eager, the custom-op calls per
compiled update, and the largest weight difference after one update from the same network.

    python benchmarks/bench_compile_step.py [--batch 256] [--T 8] [--acts tanh,gelu] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_threads_arg, environment, median, round_robin, set_threads

import pcgraph as pc
from pcgraph.engine.compiled_update import CompiledUpdate
from pcgraph.ops import native_ops


def _learner(spec: pc.GraphSpec, T: int, compiled: bool) -> pc.PCLearner:
    net = pc.compile(spec, seed=0)
    return pc.PCLearner(
        net,
        init="forward",
        T=T,
        lr_neurons=0.1,
        compile_step=compiled,
        optimizer=torch.optim.SGD(net.parameters(), lr=1e-3),
    )


def run(act: str, args: argparse.Namespace) -> dict[str, object]:
    sizes = [int(s) for s in args.sizes.split(",")]
    spec = pc.mlp(sizes, activation=act)
    g = torch.Generator().manual_seed(0)
    data = {
        "x": torch.randn(args.batch, sizes[0], generator=g),
        "y": torch.softmax(torch.randn(args.batch, sizes[-1], generator=g), -1),
    }
    eager, compiled = _learner(spec, args.T, False), _learner(spec, args.T, True)
    whole_learner = _learner(spec, args.T, False)
    whole = CompiledUpdate(whole_learner, data)
    eager.train_step(data)
    t0 = time.perf_counter()
    compiled.train_step(data)  # compiles the step functions
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    whole(data)  # compiles the whole update
    whole_compile_s = time.perf_counter() - t0

    def diff(learner: pc.PCLearner) -> float:
        return max(
            float((a.detach() - b.detach()).abs().max())
            for a, b in zip(eager.net.parameters(), learner.net.parameters(), strict=True)
        )

    diffs = {"compiled": diff(compiled), "whole": diff(whole_learner)}
    calls = {}
    for name, fn in (("compiled", compiled.train_step), ("whole", whole)):
        native_ops.CALLS.clear()
        fn(data)
        calls[name] = dict(native_ops.CALLS)
    fns = {
        "eager": lambda: eager.train_step(data),
        "compiled": lambda: compiled.train_step(data),
        "whole": lambda: whole(data),
    }
    times = round_robin(fns, torch.device("cpu"), repeats=args.repeats, warmup=2)
    ms = {k: 1e3 * median(v) for k, v in times.items()}
    return {
        "activation": act,
        "compile_s": round(compile_s, 1),
        "whole_compile_s": round(whole_compile_s, 1),
        "eager_ms": round(ms["eager"], 3),
        "compiled_ms": round(ms["compiled"], 3),
        "whole_ms": round(ms["whole"], 3),
        "compiled_over_eager": round(ms["compiled"] / ms["eager"], 3),
        "whole_over_eager": round(ms["whole"] / ms["eager"], 3),
        "custom_op_calls_per_update": calls,
        "max_weight_diff_after_one_update": diffs,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="784,128,128,128,128,10")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--T", type=int, default=8)
    parser.add_argument("--acts", default="tanh,gelu")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    add_threads_arg(parser)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    rows = [run(act, args) for act in args.acts.split(",")]
    for row in rows:
        print(
            f"{row['activation']:5s} compile {row['compile_s']:5.1f} s (steps), "
            f"{row['whole_compile_s']:5.1f} s (whole) | eager {row['eager_ms']:7.2f} ms  "
            f"steps {row['compiled_ms']:7.2f} ms  whole {row['whole_ms']:7.2f} ms | "
            f"steps/eager {row['compiled_over_eager']:.3f}  whole/eager "
            f"{row['whole_over_eager']:.3f}\n      custom ops per update "
            f"{row['custom_op_calls_per_update']} | max |Δw| vs eager "
            f"{row['max_weight_diff_after_one_update']}"
        )
    if args.json:
        env = environment(torch.device("cpu"))
        args.json.write_text(json.dumps({"environment": env, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
