"""The benchmark scripts run and report what they promise (smoke tests; not timings)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pcgraph.compiler.sparse_mp import IMPLEMENTATIONS

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_bench_init_quick_json() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_init.py"), "--quick", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    data = json.loads(out.stdout)
    assert {"rows", "hybrid_vs_forward_smm", "hybrid_vs_forward_seconds", "records"} <= set(data)
    T = data["T"]
    # steady-state SMMs per update on mlp5 (train clamp): 2T + forward sweep of h1…h4 (4),
    # + hybrid's sweep of h1, h2 (K = 2), + nothing for the class means
    assert data["rows"]["forward"]["smm_per_update"] == 2 * T + 4
    assert data["rows"]["hybrid"]["smm_per_update"] == 2 * T + 2
    assert data["rows"]["average"]["smm_per_update"] == 2 * T
    for record in data["records"]:
        assert all(0.0 <= a <= 1.0 for a in record["test_accuracy"])
        assert record["smm_total"] == sorted(record["smm_total"])


def test_bench_peers_smoke_json(tmp_path: Path) -> None:
    # the harness runs end to end and reports the promised keys; PCX is skipped (its venv is
    # not part of the test environment), the correctness check still runs in float64
    out = tmp_path / "peers.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_peers.py"), "--no-pcx"]
    cmd += ["--activations", "tanh", "--batch", "8", "--T", "2", "--threads", "1"]
    cmd += ["--steps", "2", "--repeats", "1", "--json", str(out)]
    subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600)
    data = json.loads(out.read_text())
    (row,) = data["rows"]
    assert {"pcgraph_vs_pcx", "pcgraph_vs_tuned", "pcgraph_vs_bp", "pcgraph_vs_tuned_bp"} <= set(
        row
    )
    assert row["pcgraph_vs_pcx"] is None  # skipped, not invented
    # the tuned floor runs the same rule as pcgraph (itself tested against autograd)
    assert row["check"]["pcgraph_vs_tuned_max_weight_diff_f64"] < 1e-10


@pytest.mark.slow  # ~10-20 s: keeps the default run within ~5 minutes on 2 cores
def test_bench_sparse_mp_quick_json(tmp_path: Path) -> None:
    # every implementation of every sparse op is timed against its reference and agrees with it
    out = tmp_path / "sparse_mp.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_sparse_mp.py"), "--quick"]
    subprocess.run(
        [*cmd, "--json", str(out)], capture_output=True, text=True, check=True, timeout=600
    )
    data = json.loads(out.read_text())
    timed = {(r["op"], r["implementation"]) for r in data["rows"]}
    assert timed == {(op, name) for op, table in IMPLEMENTATIONS.items() for name in table}
    assert all(r["ratio"] > 0 for r in data["rows"])
    assert data["max_rel_diff"] < 1e-5  # float32


def test_bench_step_breakdown_runs() -> None:
    # every part of one update it times, pcgraph's internals included, still runs (~3 s)
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_step.py"), "--breakdown"]
    cmd += ["--repeats", "1", "--batches", "2", "--T", "2"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600)
    for part in ("pc.state_update", "pc.errors", "pc.state_grad", "hand.step"):
        assert part in out.stdout, part


@pytest.mark.parametrize("activation", ["tanh", "gelu", "relu"])
def test_tuned_floor_is_the_pc_rule(activation: str) -> None:
    # the floor against an independent autograd reference of one update (float64, plain SGD
    # weights so that a wrong gradient cannot hide behind Adam's normalisation)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _tuned import TunedMLP

    g = torch.Generator().manual_seed(0)
    sizes = [12, 9, 7, 4]
    W = [
        torch.randn(o, i, generator=g, dtype=torch.float64) / i**0.5
        for i, o in itertools.pairwise(sizes)
    ]
    b = [torch.randn(o, generator=g, dtype=torch.float64) * 0.1 for o in sizes[1:]]
    x0 = torch.randn(5, sizes[0], generator=g, dtype=torch.float64)
    y = torch.randn(5, sizes[-1], generator=g, dtype=torch.float64)
    T, gamma, lr = 3, 0.1, 0.5
    act = {"tanh": torch.tanh, "gelu": torch.nn.functional.gelu, "relu": torch.relu}[activation]

    def energy(
        hidden: list[torch.Tensor], Ws: list[torch.Tensor], bs: list[torch.Tensor]
    ) -> torch.Tensor:
        xs = [x0, *hidden, y]
        e = x0.new_zeros(())
        for l in range(1, len(xs)):
            s = xs[l - 1] if l == 1 else act(xs[l - 1])
            e = e + 0.5 * ((xs[l] - (s @ Ws[l - 1].T + bs[l - 1])) ** 2).sum()
        return e

    # reference: forward init, T synchronous gradient steps by autograd, one SGD weight step
    hidden, s = [], x0
    for l in range(len(W) - 1):
        hidden.append(s @ W[l].T + b[l])
        s = act(hidden[-1])
    for _ in range(T):
        h = [v.clone().requires_grad_(True) for v in hidden]
        grads = torch.autograd.grad(energy(h, W, b), h)
        hidden = [v - gamma * gv for v, gv in zip(hidden, grads, strict=True)]
    Wp = [w.clone().requires_grad_(True) for w in W]
    bp = [v.clone().requires_grad_(True) for v in b]
    gW = torch.autograd.grad(energy(hidden, Wp, bp), [*Wp, *bp])
    expected = [p - lr * gp for p, gp in zip([*W, *b], gW, strict=True)]

    params = [torch.nn.Parameter(p.clone()) for p in [*W, *b]]
    tuned = TunedMLP(
        params[: len(W)],
        params[len(W) :],
        activation=activation,
        T=T,
        lr_neurons=gamma,
        optimizer=torch.optim.SGD(params, lr=lr),
    )
    tuned.update(x0, y)
    for got, want in zip(params, expected, strict=True):
        torch.testing.assert_close(got.detach(), want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("onednn", [False, True])
@pytest.mark.parametrize("loss", ["cross_entropy", "soft_cross_entropy", "sse"])
@pytest.mark.parametrize("activation", ["tanh", "gelu", "relu", "sigmoid"])
@pytest.mark.parametrize(
    ("dtype", "sizes", "batch"),
    [
        (torch.float64, [12, 9, 7, 4], 5),
        # float32 products of ≥ 2²⁰ multiply-adds: the ones the floor may send to oneDNN
        (torch.float32, [300, 256, 128, 10], 64),
    ],
)
def test_tuned_backprop_floor_is_autograd_backprop(
    activation: str,
    loss: str,
    dtype: torch.dtype,
    sizes: list[int],
    batch: int,
    onednn: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the backprop floor of bench_tta / bench_peers / bench_step against torch autograd of the
    # same loss (plain SGD on the weights, so that a wrong gradient cannot hide behind Adam),
    # with every large float32 product forced onto oneDNN, then onto MKL (the floor times the
    # two; which wins depends on the machine)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import _tuned
    from _tuned_bp import TunedBackprop

    if onednn and _tuned.ONEDNN is None:
        pytest.skip("this torch build has no oneDNN linear op")
    monkeypatch.setattr(_tuned, "_ONEDNN_WINS", {})
    monkeypatch.setattr(_tuned, "faster", lambda mkl, other: onednn)
    g = torch.Generator().manual_seed(1)
    W = [torch.randn(o, i, generator=g, dtype=dtype) / i**0.5 for i, o in itertools.pairwise(sizes)]
    b = [torch.randn(o, generator=g, dtype=dtype) * 0.1 for o in sizes[1:]]
    x0 = torch.randn(batch, sizes[0], generator=g, dtype=dtype)
    labels = torch.randint(0, sizes[-1], (batch,), generator=g)
    if loss == "cross_entropy":
        y = torch.nn.functional.one_hot(labels, sizes[-1]).to(dtype)
    elif loss == "soft_cross_entropy":  # rows that need not sum to 1: the Σ y term counts
        y = torch.rand(batch, sizes[-1], generator=g, dtype=dtype)
    else:
        y = torch.randn(batch, sizes[-1], generator=g, dtype=dtype)
    act = {
        "tanh": torch.tanh,
        "gelu": torch.nn.functional.gelu,
        "relu": torch.relu,
        "sigmoid": torch.sigmoid,
    }[activation]
    lr = 0.5
    ref = [p.clone().requires_grad_(True) for p in [*W, *b]]
    h = x0
    for l in range(len(W)):
        h = h @ ref[l].T + ref[len(W) + l]
        if l < len(W) - 1:
            h = act(h)
    if loss == "sse":
        value = 0.5 * (h - y).square().sum()
    else:  # torch's soft-target form: −Σ y log softmax(h) / B
        value = torch.nn.functional.cross_entropy(h, labels if loss == "cross_entropy" else y)
    grads = torch.autograd.grad(value, ref)
    expected = [p.detach() - lr * gp for p, gp in zip(ref, grads, strict=True)]

    params = [torch.nn.Parameter(p.clone()) for p in [*W, *b]]
    tuned = TunedBackprop(
        params[: len(W)],
        params[len(W) :],
        activation=activation,
        loss="sse" if loss == "sse" else "cross_entropy",
        optimizer=torch.optim.SGD(params, lr=lr),
    )
    torch.testing.assert_close(tuned.forward(x0), h.detach())
    tuned.warm_up(x0, y)  # gradients only: the weights must not move
    for got, want in zip(params, [*W, *b], strict=True):
        assert torch.equal(got.detach(), want)
    tuned.update(x0, y)
    if dtype == torch.float32 and onednn:
        assert any(k[0] == "grad" for k in _tuned._ONEDNN_WINS)  # the forced branch ran
    for got, want in zip(params, expected, strict=True):
        if dtype == torch.float64:
            torch.testing.assert_close(got.detach(), want, rtol=1e-10, atol=1e-12)
        else:
            torch.testing.assert_close(got.detach(), want, rtol=1e-4, atol=1e-5)


def test_bench_tta_median_over_seeds_counts_never_as_slowest() -> None:
    """``--seeds``: per target, the median over seeds of best PC / best BP, where a seed that
    never reached the target counts as slower than any that did (so "never" wins the median
    only when most seeds never got there)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_tta
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    keys = [f"{t:.2f}" for t in bench_tta.TARGETS]

    def run(*ratios: float | None) -> dict[str, object]:
        return {"model": "m", "machine": {}, "best_pc_vs_bp": dict(zip(keys, ratios, strict=True))}

    args = bench_tta.parse_args(["--seeds", "0,1,2"])
    assert args.seeds == [0, 1, 2]
    out = bench_tta.over_seeds(
        args, [run(1.6, 0.9, 1.1, 1.9), run(0.8, 1.1, 0.9, None), run(0.9, 1.8, None, None)]
    )
    assert out["median_best_pc_vs_bp"] == {keys[0]: 0.9, keys[1]: 1.1, keys[2]: 1.1, keys[3]: None}
    assert out["seeds"] == [0, 1, 2] and len(out["runs"]) == 3
    assert bench_tta.parse_args([]).seeds == [0]
    assert bench_tta.parse_args(["--seed", "4"]).seeds == [4]
