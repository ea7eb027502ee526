"""pcgraph.ops.matmul and pcgraph.compiler.steps: the fast paths compute what the math says.

References: the products written with torch.mm in float64, and the general (edge-by-edge)
inference step against torch.autograd of the energy.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

import pcgraph as pc
from pcgraph import fast
from pcgraph.cache import BoundedCache
from pcgraph.compiler import program_for
from pcgraph.ops import matmul

needs_onednn = pytest.mark.skipif(
    matmul.onednn_linear_op() is None,
    reason="this torch build has no oneDNN linear op"
    if fast.enabled()
    else "the fast paths are off (PCGRAPH_FAST=0): every product is a public torch op",
)


def _operands(b: int, n_in: int, n_out: int, *, strided: bool) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    s = (
        torch.randn(b, n_in + 7, generator=g)[:, 3 : 3 + n_in]
        if strided
        else torch.randn(b, n_in, generator=g)
    )
    w = torch.randn(n_out, n_in, generator=g) / n_in**0.5
    bias = torch.randn(n_out, generator=g)
    delta = torch.randn(b, n_out, generator=g)
    return s, w, bias, delta


@needs_onednn
@pytest.mark.parametrize("strided", [False, True])
def test_onednn_products_equal_float64_references(
    strided: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(matmul, "_MODE", "onednn")  # whatever this CPU would measure
    s, w, b, d = _operands(256, 128, 96, strided=strided)
    with torch.no_grad():
        assert matmul.use_onednn(s, "forward", 256, 128, 96)
        fwd, msg, grad = matmul.linear(s, w, b), matmul.linear_vjp(d, w), matmul.linear_grad(d, s)
    assert fwd is not None and msg is not None and grad is not None
    s64, w64, b64, d64 = (t.double() for t in (s, w, b, d))
    for got, want in ((fwd, s64 @ w64.T + b64), (msg, d64 @ w64), (grad, d64.T @ s64)):
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-4)


def test_small_float64_and_autograd_products_stay_on_torch_kernels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s, w, b, _ = _operands(8, 16, 4, strided=False)
    with torch.no_grad():
        assert matmul.linear(s, w, b) is None  # far below the measured sizes
        assert matmul.linear(s.double(), w.double(), b.double()) is None
    monkeypatch.setattr(matmul, "_MODE", "onednn")  # even where oneDNN is forced:
    big_s, big_w, big_b, _ = _operands(256, 128, 96, strided=False)
    with torch.enable_grad():  # the oneDNN op has no autograd formula
        assert matmul.linear(big_s, big_w, big_b) is None
    with torch.no_grad():
        assert matmul.linear(big_s.double(), big_w.double(), big_b.double()) is None


def test_faster_picks_the_quicker_callable() -> None:
    def slow() -> None:
        time.sleep(0.002)

    def quick() -> None:
        pass

    assert matmul.faster(slow, quick)
    assert not matmul.faster(quick, slow)


@needs_onednn
def test_choice_is_measured_once_per_shape_and_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, ...]] = []

    def fake(kind: str, m: int, k: int, n: int) -> bool:
        calls.append((kind, m, k, n))
        return kind == "vjp"  # oneDNN "wins" the messages only

    monkeypatch.setattr(matmul, "_MODE", "auto")
    monkeypatch.setattr(matmul, "_measure", fake)
    monkeypatch.setattr(matmul, "_CHOICES", BoundedCache(512))
    big = (512, 128, 64)  # ≥ MEASURE_MIN_MACS
    assert matmul.MEASURE_MIN_MACS <= 512 * 128 * 64
    for _ in range(3):
        assert not matmul.prefer_onednn("forward", *big)
        assert matmul.prefer_onednn("vjp", *big)
    assert calls == [("forward", *big), ("vjp", *big)]  # once each, then cached
    threads = torch.get_num_threads()
    assert matmul.choices() == {("forward", *big, threads): False, ("vjp", *big, threads): True}
    small = (8, 16, 4)
    assert not matmul.prefer_onednn("forward", *small)  # below the floor: MKL, not measured
    assert len(calls) == 2
    with torch.no_grad():  # the kernels follow the choice: forward on MKL, vjp on oneDNN
        s, w, _, d = _operands(512, 128, 64, strided=False)
        assert matmul.linear(s, w, None) is None
        assert matmul.linear_vjp(d, w) is not None


@pytest.mark.skipif(
    not fast.enabled() or getattr(torch.ops.mkldnn, "_linear_pointwise", None) is None,
    reason="no oneDNN linear op to find (fast paths off, or a build without it)",
)
def test_onednn_is_found_when_first_asked_under_a_float64_default_dtype(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the op has no float64 kernel: a probe that built its check in the default dtype failed
    # under set_default_dtype(float64) and left every float32 product of the process on MKL
    # (found by bench_peers, whose float64 correctness check ran first: 1.36x slower updates)
    monkeypatch.setattr(matmul, "_PROBED", False)
    monkeypatch.setattr(matmul, "_LINEAR", None)
    saved = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        assert matmul._op() is not None
        with torch.no_grad():  # the measurement of the auto mode also runs float32 operands
            assert isinstance(matmul._measure("forward", 64, 32, 16), bool)
            assert isinstance(matmul._measure("grad", 64, 32, 16), bool)
    finally:
        torch.set_default_dtype(saved)
    assert matmul._op() is not None  # found once, kept


@needs_onednn
def test_deterministic_mode_uses_the_fixed_size_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*args: object) -> bool:
        raise AssertionError("measured although torch's deterministic mode is on")

    monkeypatch.setattr(matmul, "_MODE", "auto")
    monkeypatch.setattr(matmul, "_measure", never)
    monkeypatch.setattr(matmul, "_CHOICES", BoundedCache(512))
    monkeypatch.setattr(matmul, "_AVX512", True)  # the rule as on an AVX-512 CPU
    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        assert matmul.prefer_onednn("forward", 256, 128, 128)  # 4 M ≥ ONEDNN_MIN_MACS
        assert not matmul.prefer_onednn("forward", 64, 128, 128)  # 1 M
    finally:
        torch.use_deterministic_algorithms(was)


def test_the_fixed_size_rule_is_the_default_and_measures_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # same seed, same machine → same library for each product → bit-identical runs
    env = {k: v for k, v in os.environ.items() if k != "PCGRAPH_CPU_MATMUL"}
    proc = subprocess.run(
        [sys.executable, "-c", "from pcgraph.ops import matmul; print(matmul._MODE)"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "size"

    def never(*args: object) -> bool:
        raise AssertionError("measured under the fixed size rule")

    monkeypatch.setattr(matmul, "_MODE", "size")
    monkeypatch.setattr(matmul, "_measure", never)
    on = matmul.onednn_linear_op() is not None  # no op (or fast paths off): always MKL
    big, small = (256, 128, 128), (64, 128, 128)  # 4 M and 1 M multiply-adds
    assert 64 * 128 * 128 < matmul.ONEDNN_MIN_MACS <= 256 * 128 * 128
    for avx512 in (True, False):  # on an AVX2 (or older) CPU, MKL for every product
        monkeypatch.setattr(matmul, "_AVX512", avx512)
        for kind in ("forward", "vjp", "grad"):
            assert matmul.prefer_onednn(kind, *big) is (on and avx512)  # type: ignore[arg-type]
            assert not matmul.prefer_onednn(kind, *small)  # type: ignore[arg-type]


def test_an_unknown_matmul_mode_is_one_clear_error() -> None:
    env = {**os.environ, "PCGRAPH_CPU_MATMUL": "fastest"}
    proc = subprocess.run(
        [sys.executable, "-c", "import pcgraph.ops.matmul"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert "ConfigError" in last and "PCGRAPH_CPU_MATMUL='fastest'" in last
    assert "auto, size, mkl, onednn" in last


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("activation", ["tanh", "gelu", "relu", "sigmoid", "silu", "elu"])
def test_fast_step_equals_autograd_of_the_energy(activation: str, dtype: torch.dtype) -> None:
    # a chain wide enough that float32 products go to oneDNN (where available) and a skip edge
    # so that the general path runs too: ∂E/∂x and ∂E/∂θ must equal autograd's
    spec = pc.GraphSpec.from_dict(
        {
            "name": "skip",
            "nodes": [
                {"name": "x", "shape": 96, "role": "input"},
                {"name": "h1", "shape": 128, "activation": activation},
                {"name": "h2", "shape": 128, "activation": activation},
                {"name": "y", "shape": 10, "role": "output"},
            ],
            "edges": [
                {"source": "x", "target": "h1", "op": "linear"},
                {"source": "h1", "target": "h2", "op": "linear"},
                {"source": "h2", "target": "y", "op": "linear"},
                {"source": "h1", "target": "y", "op": "linear"},
            ],
        }
    )
    net = pc.compile(spec, seed=0, dtype=dtype)
    clamp = net.resolve_clamp("train")
    g = torch.Generator().manual_seed(1)
    x = torch.randn(256, net.state_size, generator=g, dtype=dtype)
    prog = program_for(net, clamp)
    buf = prog.prepare(x)
    # h2 has one linear parent and one linear child: specialised closures, unless the fast
    # paths are off (PCGRAPH_FAST=0), where this checks the general path alone
    bound = fast.enabled()
    assert any(fn is not None for _, fn in prog.bound.error_steps) is bound
    assert any(fn is not None for fn, _ in prog.bound.gradient_steps.steps) is bound
    sent = prog.errors(x, buf)
    prog.state_grad(x, buf, sent)
    net.zero_grad(set_to_none=True)
    prog.param_grads(x, buf, accumulate=False)
    local_p = [p.grad.clone() for p in net.parameters()]  # type: ignore[union-attr]
    x_ = x.detach().clone().requires_grad_(True)
    energy = net.energy(x_)
    gx, *gp = torch.autograd.grad(energy, [x_, *net.parameters()])
    mask = prog.free_mask.bool()
    tol = {"rtol": 1e-10, "atol": 1e-10} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-3}
    torch.testing.assert_close(prog.as_states(buf.grad)[:, mask], gx[:, mask], **tol)
    for got, want in zip(local_p, gp, strict=True):
        torch.testing.assert_close(got, want, **tol)


def test_param_grads_overwrite_in_place_without_new_tensors() -> None:
    net = pc.compile(pc.mlp([32, 16, 4], activation="tanh"), seed=0, dtype=torch.float64)
    clamp = net.resolve_clamp("train")
    x = torch.randn(8, net.state_size, dtype=torch.float64)
    prog = program_for(net, clamp)
    buf = prog.prepare(x)
    prog.errors(x, buf)
    prog.param_grads(x, buf, accumulate=False)
    first = {id(p): (p.grad, p.grad.clone()) for p in net.parameters()}  # type: ignore[union-attr]
    prog.param_grads(x, buf, accumulate=False)  # the same gradient again: overwritten, not added
    for p in net.parameters():
        tensor, value = first[id(p)]
        assert p.grad is tensor  # the same storage: nothing allocated
        torch.testing.assert_close(p.grad, value, rtol=0, atol=0)
    prog.param_grads(x, buf, accumulate=True)
    for p in net.parameters():
        torch.testing.assert_close(p.grad, 2 * first[id(p)][1])


@needs_onednn
@pytest.mark.parametrize("mode", ["onednn", "mkl"])
def test_library_choice_of_bound_steps_is_made_outside_autograd(monkeypatch, mode: str) -> None:  # type: ignore[no-untyped-def]
    """``train_step`` computes the weight gradients with autograd on (as a user calls it), but
    oneDNN runs only outside it: the choice bound into the gradient steps must be the one for
    products outside autograd. With oneDNN forced, no weight gradient is bound to MKL (the
    general path runs oneDNN); with MKL forced, each is one bound product; the gradients are
    the same either way."""
    import functools

    monkeypatch.setattr(matmul, "_MODE", mode)
    net = pc.compile(pc.mlp([12, 9, 5]), seed=0)
    learner = pc.PCLearner(net, init="forward", T=3)
    g = torch.Generator().manual_seed(0)
    data = {"x": torch.randn(6, 12, generator=g), "y": torch.randn(6, 5, generator=g)}
    for _ in range(2):  # the first creates the .grad tensors, the second binds to them
        learner.train_step(data)
    prog = program_for(net, learner.clamp)
    (steps,) = prog.bound.derived.grad_steps.values()
    general = [isinstance(step, functools.partial) for step in steps]
    assert all(general) if mode == "onednn" else not any(general)
