"""The sparse backend's three products, each implementation against its plain-torch reference.

For every implementation listed in :data:`pcgraph.compiler.sparse_mp.IMPLEMENTATIONS`
(``predictions`` s Wᵀ, ``messages`` δ W, ``weight_grad`` −Σ_b δ[b, row] s[b, col]) this times
one call on float32 operands built as the sparse program builds them, on:

- ``decoder4_fashion`` compiled with ``backend="sparse"`` (the repository has no neuron-level
  topology; the layered decoder as one sparse W: 1,808 neurons, 397k edges, 12 % dense);
- random W of 1k, 5k and 20k neurons at 5 %, 2 % and 1 % density (no duplicate entries).

Every batch size B, every thread count. The implementations of one op are timed interleaved in
one process (one call of each per round, the order rotating; ``_common.round_robin``), and the
medians are compared: ``ratio`` = median time of the implementation / median time of the
``torch`` reference (below 1: faster). Before timing, each implementation is checked against the
reference on the same operands. An implementation whose [nnz, B] temporaries would pass
``--max-gib`` is skipped and printed as such (the reference ``weight_grad`` gathers two).

The rule that :func:`pcgraph.compiler.sparse_mp.choose` applies is fixed, not timed; this script
is how its thresholds were chosen. On a small shared machine timings are noisy: benchmark idle.

Usage (from the repository root)::

    python benchmarks/bench_sparse_mp.py                  # B 16/64/256, 1-2 threads (minutes)
    python benchmarks/bench_sparse_mp.py --quick          # small graphs, a few seconds
    python benchmarks/bench_sparse_mp.py --json out.json  # also write the figures as JSON
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, median, round_robin

import pcgraph as pc
from pcgraph.compiler.sparse_mp import IMPLEMENTATIONS, SparseOperands, choose

ROOT = Path(__file__).resolve().parent.parent
RANDOM = [(1000, 0.05), (5000, 0.02), (20000, 0.01)]
QUICK_RANDOM = [(300, 0.05)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="one small random graph, B 16/64 (seconds)")
    p.add_argument("--batch", default=None, help="comma-separated batch sizes (default 16,64,256)")
    p.add_argument("--threads", default=None, help="comma-separated torch threads (default 1,2)")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (default 7)")
    p.add_argument("--max-gib", type=float, default=1.0, help="skip larger [nnz, B] temporaries")
    p.add_argument("--no-topology", action="store_true", help="random graphs only")
    p.add_argument("--json", default=None, help="write the figures to this JSON file")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    ints = lambda s: [int(v) for v in s.split(",")]  # noqa: E731
    args.batch = ints(args.batch or ("16,64" if args.quick else "16,64,256"))
    args.threads = ints(args.threads or ("1" if args.quick else "1,2"))
    args.repeats = args.repeats or (3 if args.quick else 7)
    return args


def random_graph(d: int, density: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A coalesced edge_index [2, nnz] of about density·d² distinct entries, and weights."""
    g = torch.Generator().manual_seed(seed)
    flat = torch.randint(0, d * d, (int(density * d * d),), generator=g).unique()  # sorted
    edge_index = torch.stack([flat // d, flat % d])
    return edge_index, torch.randn(flat.numel(), generator=g) / (density * d) ** 0.5


def topology_graph(name: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = pc.compile(ROOT / "topologies" / f"{name}.yaml", backend="sparse", seed=0)
    edge_index = net.edge_index  # type: ignore[attr-defined]
    return edge_index, net.weight.detach(), net.state_size  # type: ignore[attr-defined]


def temporaries_gib(op: str, name: str, nnz: int, batch: int) -> float:
    """GiB of the [nnz, B] float32 tensors an implementation allocates."""
    count = {("weight_grad", "torch"): 2, ("predictions", "tg_scatter"): 2}
    count[("messages", "tg_scatter")] = 2
    return count.get((op, name), 0) * nnz * batch * 4 / 2**30


def measure_graph(
    label: str,
    edge_index: torch.Tensor,
    values: torch.Tensor,
    d: int,
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    ops = SparseOperands.from_edges(edge_index, values, d)
    nnz = edge_index.shape[1]
    rows = []
    for batch in args.batch:
        g = torch.Generator().manual_seed(args.seed + batch)
        s, delta = torch.randn(batch, d, generator=g), torch.randn(batch, d, generator=g)
        operands = {"predictions": (s,), "messages": (delta,), "weight_grad": (delta, s)}
        for threads in args.threads:
            torch.set_num_threads(threads)
            for op, table in IMPLEMENTATIONS.items():
                dense = operands[op]
                fns = {}
                skipped = []
                for name, impl in table.items():
                    if temporaries_gib(op, name, nnz, batch) > args.max_gib:
                        skipped.append(name)
                        continue
                    fns[name] = lambda impl=impl, dense=dense: impl.fn(ops, *dense)
                ref = fns["torch"]() if "torch" in fns else None
                check = {}
                for name, fn in fns.items():
                    if ref is not None:
                        got = fn()
                        scale = float(ref.abs().max()) or 1.0
                        check[name] = float((got - ref).abs().max()) / scale
                times = round_robin(fns, torch.device("cpu"), repeats=args.repeats, warmup=1)
                base = median(times["torch"]) if "torch" in times else None
                for name in table:
                    t = median(times[name]) if name in times else None
                    rows.append(
                        {
                            "graph": label,
                            "neurons": d,
                            "edges": nnz,
                            "batch": batch,
                            "threads": threads,
                            "op": op,
                            "implementation": name,
                            "chosen": choose(op, batch, torch.device("cpu")) == name,
                            "median_s": t,
                            "ratio": None if t is None or base is None else t / base,
                            "max_rel_diff": check.get(name),
                            "skipped": name in skipped,
                        }
                    )
                    print_row(rows[-1])
    return rows


def print_row(r: dict[str, Any]) -> None:
    ms = "skipped (memory)" if r["skipped"] else f"{r['median_s'] * 1e3:9.3f} ms"
    ratio = "" if r["ratio"] is None else f"{r['ratio']:6.2f}x"
    diff = "" if r["max_rel_diff"] is None else f"  diff {r['max_rel_diff']:.1e}"
    mark = " *" if r["chosen"] else ""
    print(
        f"{r['graph']:>14} nnz {r['edges']:>8} B {r['batch']:>4} thr {r['threads']} "
        f"{r['op']:>11} {r['implementation']:>14}: {ms:>16} {ratio:>8}{diff}{mark}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    env = environment(torch.device("cpu"))
    import torch_geometric

    env["torch_geometric"] = torch_geometric.__version__
    print(
        f"bench_sparse_mp — {env['cpu']} ({env['cpu_count']} cores), torch {env['torch']}, "
        f"torch_geometric {env['torch_geometric']}, commit {env.get('git_commit', '?')}; "
        "ratio = time / the torch reference's; * = the implementation the fixed rule runs",
        flush=True,
    )
    graphs = [(f"random{d}@{p:g}", *random_graph(d, p, args.seed), d) for d, p in RANDOM]
    if args.quick:
        graphs = [(f"random{d}@{p:g}", *random_graph(d, p, args.seed), d) for d, p in QUICK_RANDOM]
    elif not args.no_topology:
        graphs.insert(0, ("decoder4_fashion", *topology_graph("decoder4_fashion")))
    rows = []
    for label, edge_index, values, d in graphs:
        rows += measure_graph(label, edge_index, values, d, args)
    worst = max((r["max_rel_diff"] or 0.0) for r in rows)
    print(f"largest relative difference from the reference: {worst:.1e}")
    if args.json:
        result = {
            "benchmark": "bench_sparse_mp",
            "env": env,
            "quick": args.quick,
            "repeats": args.repeats,
            "rows": rows,
            "max_rel_diff": worst,
            "wall_s": time.perf_counter() - start,
        }
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
