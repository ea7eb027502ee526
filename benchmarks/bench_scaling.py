"""How pcgraph's cost grows with the graph: time per inference step, compile time, memory.

Two families of graphs, all with linear edges and tanh on every node:

- ``chain``: x_0 → x_1 → … → x_d, width 64, batch 64, depth d = 2 … 64 (first and last node
  clamped — the supervised clamp set);
- ``dag`` / ``cyclic``: random sparse graphs of n = 10 … 1000 groups of 8 neurons, batch 64, with
  about 3 parents per group (``dag``: parents drawn among earlier groups; ``cyclic``: among all
  groups, so cycles are the rule), built with ``pc.GraphSpec.from_dict``; the first n/10 groups
  are clamped inputs.

For each graph:

- ``spec_s``: ``GraphSpec.from_dict`` (validation); ``compile_s``: ``pc.compile``; ``plan_s``: the
  first ``solve_inference`` call with T = 0, which builds and caches the execution plan;
- ``step_s``: the marginal time of one inference step, (t(T₂) − t(T₁)) / (T₂ − T₁) of
  ``solve_inference`` (median over repeats), which removes the per-batch fixed costs;
- memory: ``param_bytes`` and ``state_bytes`` (the tensors pcgraph holds: parameters, the [B, D]
  state and its error/gradient buffers) and ``peak_bytes``: on CUDA the allocator's peak during
  compile + inference, on CPU the growth of the peak RSS over the RSS before the graph was built
  (torch's CPU allocations are not visible to ``tracemalloc``; RSS is coarse: the allocator keeps
  freed pages, so small graphs read 0).

For the random graphs a reference is timed too: ``stacked_s``, one inference step of the same graph
with every edge's weight stacked into one [E, 8, 8] tensor, run as one ``bmm`` per direction plus
``index_add`` (what the design's "stack edges with identical signatures" asks the compiler to do);
it is checked against pcgraph on one graph before timing.

The growth exponent is the least-squares slope of log(step_s) against log(edges).

Usage::

    python benchmarks/bench_scaling.py --quick          # < 60 s on a 2-core CPU
    python benchmarks/bench_scaling.py                  # the full sweep
    python benchmarks/bench_scaling.py --json [--device cuda]
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

import pcgraph as pc

GROUP = 8
BATCH = 64
WIDTH = 64
LR = 0.05
ACT = "tanh"


# --- graphs ----------------------------------------------------------------------------------
def chain_spec(depth: int) -> tuple[pc.GraphSpec, list[str]]:
    names = [f"x{i}" for i in range(depth + 1)]
    roles = ["input", *["latent"] * (depth - 1), "output"]
    spec = pc.chain(names, [WIDTH] * (depth + 1), roles=roles, activation=ACT, name=f"chain{depth}")
    return spec, [names[0], names[-1]]


def random_graph_dict(
    n: int, kind: str, seed: int, parents: int = 3, group: int | None = None
) -> dict[str, Any]:
    """A random sparse graph of ``n`` groups of ``group`` (default ``GROUP``) neurons, ≈
    ``parents`` in-edges each; the first tenth are inputs."""
    rng = random.Random(seed)
    n_in = max(1, n // 10)
    nodes = [
        {
            "name": f"g{i}",
            "shape": GROUP if group is None else group,
            "role": "input" if i < n_in else "latent",
            "activation": ACT,
        }
        for i in range(n)
    ]
    edges = []
    for j in range(1, n):
        limit = j if kind == "dag" else n
        k = min(parents, limit - (0 if kind == "dag" else 1))
        chosen: set[int] = set()
        while len(chosen) < k:  # sampling without building an O(n) pool per node
            i = rng.randrange(limit)
            if i != j:
                chosen.add(i)
        for i in sorted(chosen):
            edges.append({"source": f"g{i}", "target": f"g{j}", "op": "linear"})
    return {"name": f"{kind}{n}", "nodes": nodes, "edges": edges}


def backends_supported() -> bool:
    """Whether ``pc.compile`` takes ``backend=`` (dense per-edge kernels vs sparse)."""
    return "backend" in inspect.signature(pc.compile).parameters


def compile_net(
    spec: pc.GraphSpec, device: torch.device, backend: str | None, dtype: torch.dtype | None = None
) -> pc.PCNetwork:
    kw: dict[str, Any] = {} if backend is None else {"backend": backend}
    return pc.compile(spec, seed=0, device=device, dtype=dtype, **kw)


def backend_name(net: pc.PCNetwork) -> str:
    return "sparse" if type(net).__name__.startswith("Sparse") else "dense"


# --- the stacked reference ---------------------------------------------------------------------
class StackedStep:
    """One synchronous inference step of a graph of equal-size groups with linear edges, all edges
    run as one batched matmul per direction (states laid out [N, B, g])."""

    def __init__(self, net: pc.PCNetwork, clamp: list[str]) -> None:
        dev = net.device
        self.src = torch.tensor([e.source for e in net.edges], device=dev)
        self.dst = torch.tensor([e.target for e in net.edges], device=dev)
        with torch.no_grad():
            self.W = torch.stack([k.weight for k in net.kernels]).detach()  # [E, out, in]
            self.Wt = self.W.transpose(1, 2).contiguous()
            self.b = torch.stack([k.bias for k in net.kernels]).detach()[:, None, :]  # [E,1,g]
        n = len(net.nodes)
        has_parent = torch.zeros(n, device=dev, dtype=net.dtype)
        has_parent[self.dst] = 1.0
        free = torch.tensor([0.0 if nd.name in clamp else 1.0 for nd in net.nodes], device=dev)
        self.has_parent = has_parent[:, None, None].to(net.dtype)
        self.free = free[:, None, None].to(net.dtype)
        self.n = n

    @torch.no_grad()
    def step(self, X: torch.Tensor) -> None:
        """X: [N, B, g] states, updated in place."""
        S = torch.tanh(X)
        out = torch.baddbmm(self.b, S[self.src], self.Wt)  # [E, B, g]
        mu = torch.zeros_like(X).index_add_(0, self.dst, out)
        eps = (X - mu) * self.has_parent
        msg = torch.zeros_like(X).index_add_(0, self.src, torch.bmm(eps[self.dst], self.W))
        grad = eps - torch.ops.aten.tanh_backward(msg, S)  # msg ⊙ (1 − tanh²)
        X.sub_(LR * self.free * grad)


def check_stacked(device: torch.device) -> float:
    """Max |Δx| between pcgraph and the stacked reference after 3 steps (float64)."""
    spec = pc.GraphSpec.from_dict(random_graph_dict(30, "cyclic", seed=1))
    net = compile_net(spec, device, "dense" if backends_supported() else None, torch.float64)
    clamp = [nd.name for nd in spec.nodes if nd.role == "input"]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, net.state_size, generator=g, dtype=torch.float64).to(device)
    ref = x.view(BATCH, len(net.nodes), GROUP).transpose(0, 1).clone()
    pc.solve_inference(net, x, clamp, 3, lr=LR)
    st = StackedStep(net, clamp)
    for _ in range(3):
        st.step(ref)
    return float((x.view(BATCH, -1, GROUP).transpose(0, 1) - ref).abs().max())


# --- measuring ---------------------------------------------------------------------------------
def _state_bytes(net: pc.PCNetwork, states: torch.Tensor, clamp: list[str]) -> int:
    """Bytes of the state buffer plus the inference plan's per-batch buffers (ε, δ, ∂E/∂x, σ(x)
    and the working states; distinct storages)."""
    seen: dict[int, int] = {states.untyped_storage().data_ptr(): states.nbytes}
    try:
        from pcgraph.compiler import program_for

        buf = program_for(net, net.resolve_clamp(clamp)).buffers(states.shape[0])
        for t in (buf.eps, buf.delta, buf.grad, buf.sent_buf, buf.states):
            if t is not None:
                seen[t.untyped_storage().data_ptr()] = t.nbytes
    except Exception:  # internals changed: count the state buffer only
        pass
    return sum(seen.values())


def measure(
    family: str,
    size: int,
    make: Callable[[], tuple[pc.GraphSpec, list[str]]],
    device: torch.device,
    repeats: int,
    T1: int,
    T2: int,
    stacked: bool,
    backend: str | None = None,
) -> dict[str, Any]:
    with C.peak_memory(device) as mem:
        t0 = time.perf_counter()
        spec, clamp = make()
        spec_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        net = compile_net(spec, device, backend)
        C.sync(device)
        compile_s = time.perf_counter() - t0
        g = torch.Generator().manual_seed(0)
        x0 = (0.1 * torch.randn(BATCH, net.state_size, generator=g)).to(device)
        x = x0.clone()
        plan_s = C.timed(lambda: pc.solve_inference(net, x, clamp, 0, lr=LR), device)

        def run(T: int) -> Callable[[], None]:
            def fn() -> None:
                x.copy_(x0)
                pc.solve_inference(net, x, clamp, T, lr=LR)

            return fn

        times = C.round_robin({"t1": run(T1), "t2": run(T2)}, device, repeats=repeats, warmup=1)
    step_s = max(C.median(times["t2"]) - C.median(times["t1"]), 1e-9) / (T2 - T1)
    row: dict[str, Any] = {
        "family": family,
        "backend": backend_name(net),
        "size": size,
        "nodes": len(net.nodes),
        "edges": len(net.edges),
        "state_size": net.state_size,
        "spec_s": spec_s,
        "compile_s": compile_s,
        "plan_s": plan_s,
        "step_s": step_s,
        "update_s_T1": C.median(times["t1"]),
        "param_bytes": sum(p.nbytes for p in net.parameters()),
        "state_bytes": _state_bytes(net, x, clamp),
        "peak_bytes": mem.get("peak_bytes", 0),
    }
    if stacked:
        ref = net if backend_name(net) == "dense" else compile_net(spec, device, "dense")
        st = StackedStep(ref, clamp)
        X = x0.view(BATCH, len(net.nodes), GROUP).transpose(0, 1).contiguous()
        ts = C.round_robin({"s": lambda: st.step(X)}, device, repeats=max(5, repeats), warmup=2)
        row["stacked_s"] = C.median(ts["s"])
    return row


def slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log y against log x."""
    pts = [(math.log(a), math.log(b)) for a, b in zip(xs, ys, strict=True) if a > 0 and b > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    den = sum((p[0] - mx) ** 2 for p in pts)
    return None if den == 0 else sum((p[0] - mx) * (p[1] - my) for p in pts) / den


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument("--quick", action="store_true", help="fewer sizes and repeats (< 60 s)")
    ap.add_argument(
        "--large",
        action="store_true",
        help="also 10,000 groups and a neuron-level graph of 100,000 edges (sparse backend)",
    )
    ap.add_argument("--device", default="cpu")
    C.add_threads_arg(ap)
    args = ap.parse_args(argv)
    C.set_threads(args.threads)
    device = C.resolve_device(args.device)
    out = sys.stderr if args.json else sys.stdout
    t_start = time.perf_counter()
    if args.quick:
        depths, sizes, kinds, repeats, T1, T2 = (
            [2, 4, 8, 16, 32, 64],
            [10, 30, 100, 300, 1000],
            ["dag", "cyclic"],
            3,
            2,
            4,
        )
    else:
        depths = [2, 4, 8, 16, 32, 64]
        sizes = [10, 30, 100, 300, 1000, 3000]
        kinds, repeats, T1, T2 = ["dag", "cyclic"], 7, 2, 6
    stacked_err = check_stacked(device)
    print(
        f"[bench_scaling] stacked reference vs pcgraph (3 steps, float64): {stacked_err:.1e}",
        file=out,
        flush=True,
    )
    rows = []
    for d in depths:
        rows.append(measure("chain", d, lambda d=d: chain_spec(d), device, repeats, T1, T2, False))
        print(
            f"[bench_scaling] chain depth {d}: {rows[-1]['step_s'] * 1e3:.3f} ms/step",
            file=out,
            flush=True,
        )

    def make_random(n: int, kind: str) -> Callable[[], tuple[pc.GraphSpec, list[str]]]:
        def make() -> tuple[pc.GraphSpec, list[str]]:
            spec = pc.GraphSpec.from_dict(random_graph_dict(n, kind, seed=n))
            return spec, [nd.name for nd in spec.nodes if nd.role == "input"]

        return make

    backends: list[str | None] = ["dense", "sparse"] if backends_supported() else [None]
    failures: list[str] = []
    for kind in kinds:
        for backend in backends:
            for n in sizes:
                try:
                    row = measure(
                        kind, n, make_random(n, kind), device, repeats, T1, T2, True, backend
                    )
                except Exception as exc:  # a backend that cannot run this graph: note and go on
                    failures.append(f"{kind} n={n} backend={backend}: {type(exc).__name__}: {exc}")
                    print(f"[bench_scaling] FAILED {failures[-1]}", file=out, flush=True)
                    continue
                rows.append(row)
                print(
                    f"[bench_scaling] {kind} n={n} ({row['backend']}): "
                    f"{row['step_s'] * 1e3:.3f} ms/step",
                    file=out,
                    flush=True,
                )
    if args.large:  # the sparse backend only: per-edge kernels at this size take minutes
        large: list[tuple[str, int, Callable[[], tuple[pc.GraphSpec, list[str]]]]] = [
            (kind, 10_000, make_random(10_000, kind)) for kind in kinds
        ]

        def make_neurons() -> tuple[pc.GraphSpec, list[str]]:
            spec = pc.GraphSpec.from_dict(random_graph_dict(10_000, "cyclic", 7, 10, group=1))
            return spec, [nd.name for nd in spec.nodes if nd.role == "input"]

        large.append(("neurons", 10_000, make_neurons))
        for fam, n, make in large:
            row = measure(fam, n, make, device, 3, T1, T2, False, "sparse")
            rows.append(row)
            print(
                f"[bench_scaling] {fam} n={n} edges={row['edges']} (sparse): "
                f"{row['step_s'] * 1e3:.3f} ms/step, compile {row['compile_s']:.2f} s",
                file=out,
                flush=True,
            )
    fits: dict[str, dict[str, float | None]] = {}
    for fam in ["chain", *kinds]:
        for bk in ["dense", "sparse"]:
            rs = [r for r in rows if r["family"] == fam and r["backend"] == bk]
            if len(rs) < 2:
                continue
            edges = [r["edges"] for r in rs]
            key = fam if fam == "chain" else f"{fam}/{bk}"
            fits[key] = {
                "step_vs_edges": slope(edges, [r["step_s"] for r in rs]),
                "compile_vs_edges": slope(edges, [r["compile_s"] for r in rs]),
            }
            if fam != "chain":
                with_ref = [r for r in rs if r.get("stacked_s") is not None]
                fits[key]["stacked_vs_edges"] = slope(
                    [r["edges"] for r in with_ref], [r["stacked_s"] for r in with_ref]
                )
    result = {
        "benchmark": "bench_scaling",
        "env": C.environment(device),
        "quick": args.quick,
        "batch": BATCH,
        "T1": T1,
        "T2": T2,
        "repeats": repeats,
        "stacked_check_max_abs_diff": stacked_err,
        "fits": fits,
        "failures": failures,
        "rows": rows,
        "wall_s": time.perf_counter() - t_start,
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    env = result["env"]
    print(
        f"pcgraph bench_scaling — {env['device']} ({env['cpu']}, {env['torch_threads']} threads"
        f"{', ' + env['gpu'] if 'gpu' in env else ''}), torch {env['torch']}, {env['date']}; "
        f"batch {BATCH}; step = (t(T={T2}) − t(T={T1})) / {T2 - T1}, medians of {repeats}"
    )
    head = (
        f"{'family':>7} {'backend':>7} {'size':>5} {'nodes':>5} {'edges':>5} | "
        f"{'step ms':>8} {'stacked':>8} | "
        f"{'spec ms':>8} {'compile':>8} {'plan ms':>8} | {'params':>8} {'states':>8} "
        f"{'peak':>8}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        stk = f"{r['stacked_s'] * 1e3:8.3f}" if "stacked_s" in r else f"{'':>8}"
        print(
            f"{r['family']:>7} {r['backend']:>7} {r['size']:>5} {r['nodes']:>5} {r['edges']:>5} | "
            f"{r['step_s'] * 1e3:8.3f} {stk} | {r['spec_s'] * 1e3:8.2f} "
            f"{r['compile_s'] * 1e3:8.2f} {r['plan_s'] * 1e3:8.2f} | "
            f"{_mib(r['param_bytes'])} {_mib(r['state_bytes'])} {_mib(r['peak_bytes'])}"
        )
    print(
        "memory in MiB; peak = "
        + ("CUDA allocator peak" if device.type == "cuda" else "peak-RSS growth (coarse)")
    )
    for fam, f in fits.items():
        parts = [f"{k} {v:.2f}" for k, v in f.items() if v is not None]
        print(f"growth exponent ({fam}, log-log slope): " + ", ".join(parts))
    print(
        f"stacked reference vs pcgraph: max |Δx| = {stacked_err:.1e}; wall {result['wall_s']:.1f} s"
    )
    return 0


def _mib(b: int) -> str:
    return f"{b / 2**20:8.2f}"


if __name__ == "__main__":
    raise SystemExit(main())
