"""pcgraph.ops.native: the C kernels compute tanh and GELU to float32 accuracy, take only the
tensors they can handle, and step aside cleanly where there is no compiler.

References: torch's float64 kernels. The accuracy bound is 4 ulp, the bound glibc documents for
its vector math (libmvec) and the one float32 vector libraries are held to.
"""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
import weakref

import pytest
import torch

from pcgraph import fast
from pcgraph.activations import get_activation
from pcgraph.ops import native

EPS32 = torch.finfo(torch.float32).eps
SPECIAL = [float("nan"), float("inf"), float("-inf"), 0.0, -0.0, 1e-30, -1e-30, 7.9, -7.9, 20.0]


def _grid() -> torch.Tensor:
    return torch.cat(
        [torch.linspace(-12, 12, 100_001), torch.linspace(-1e-3, 1e-3, 2001), torch.tensor(SPECIAL)]
    ).float()


def _ulps(got: torch.Tensor, want: torch.Tensor) -> float:
    finite = torch.isfinite(want)
    err = (got.double() - want)[finite].abs()
    scale = want[finite].abs().clamp_min(torch.finfo(torch.float32).tiny)
    return float((err / (EPS32 * scale)).max())


# why the kernel tests skip where the kernels are unavailable
NO_NATIVE = (
    "no C compiler on this machine"
    if fast.enabled()
    else "the fast paths are off (PCGRAPH_FAST=0): no native kernel is built or run"
)


def test_a_compiler_means_the_kernels_are_built() -> None:
    if not fast.enabled():  # switched off: nothing is compiled, whatever compiler there is
        assert not native.available() and native.library_path() is None
    elif shutil.which(os.environ.get("CC") or "cc") is None and shutil.which("gcc") is None:
        assert not native.available()  # nothing to build with: torch's kernels are used
    else:
        assert native.available(), "a C compiler is present but the native kernels did not build"
        assert native.library_path() is not None


needs_native = pytest.mark.skipif(not native.available(), reason=NO_NATIVE)


@needs_native
def test_tanh_within_4_ulp_of_float64_with_ieee_special_values() -> None:
    x = _grid()
    out = torch.empty_like(x)
    assert native.tanh_into(x, out)
    want = torch.tanh(x.double())
    assert _ulps(out, want) <= 4
    assert torch.equal(torch.isnan(out), torch.isnan(x))
    assert out[x == float("inf")].item() == 1.0 and out[x == float("-inf")].item() == -1.0
    assert torch.all(out[~torch.isnan(out)].abs() <= 1)  # so that 1 − tanh² ≥ 0


@needs_native
def test_gelu_and_its_derivative_within_float32_accuracy() -> None:
    x = _grid()
    out = torch.empty_like(x)
    assert native.gelu_into(x, out)
    ref = x.double()
    want = torch.nn.functional.gelu(ref)
    # GELU is near 0 for x ≪ 0, where erf's absolute error decides: 4 ulp of the largest |x|
    finite = torch.isfinite(want)
    assert float((out.double() - want)[finite].abs().max()) <= 4 * EPS32 * 12
    assert torch.equal(torch.isnan(out), torch.isnan(want))
    g = torch.linspace(-2, 2, x.numel()).float()
    want_g = torch.ops.aten.gelu_backward(g.double(), ref)
    got_g = g.clone()
    assert native.gelu_vjp_(got_g, x)
    finite = torch.isfinite(want_g)
    assert float((got_g.double() - want_g)[finite].abs().max()) <= 4 * EPS32 * 2 * 1.13
    assert torch.equal(torch.isnan(got_g), torch.isnan(want_g))


@needs_native
def test_strided_node_views_are_written_exactly_where_they_should_be() -> None:
    state = torch.randn(64, 300)
    x = state[:, 40:168]  # a node's columns of a [B, D] state: rows with a stride
    sigma = torch.full((64, 300), 7.0)
    out = sigma[:, 100:228]
    before = out._version
    assert native.tanh_into(x, out)
    assert out._version > before  # in-place writes are visible to torch's version checks
    torch.testing.assert_close(out, torch.tanh(x), rtol=0, atol=4 * EPS32)
    assert torch.all(sigma[:, :100] == 7.0) and torch.all(sigma[:, 228:] == 7.0)
    img = torch.randn(8, 3, 5, 5)  # [B, C, H, W] blocks: rows of C·H·W contiguous floats
    got = torch.empty_like(img)
    assert native.tanh_into(img, got)
    torch.testing.assert_close(got, torch.tanh(img), rtol=0, atol=4 * EPS32)
    assert native.tanh_into(x, x)  # in place on the same view is allowed
    torch.testing.assert_close(x, out, rtol=0, atol=0)
    g = torch.ones(64, 128)
    before = g._version
    assert native.gelu_vjp_(g, x)  # the vjp writes g (not x): g's version moves
    assert g._version > before


@needs_native
def test_what_the_kernels_do_not_take_is_left_to_torch() -> None:
    x = torch.randn(16, 32)
    out = torch.zeros(16, 32)
    assert not native.tanh_into(x.double(), out.double())  # float64
    assert not native.tanh_into(x.t(), torch.zeros(32, 16))  # columns not contiguous
    assert not native.tanh_into(x, torch.zeros(16, 31))  # shapes differ
    wide = torch.zeros(16, 32)
    assert native.tanh_into(x, wide)  # a plan for this pair is now cached: a same-address,
    narrow = wide[:, :31]  # same-stride output of another shape must not reuse it
    assert not native.tanh_into(x, narrow)
    buf = torch.randn(16, 40)
    assert not native.tanh_into(buf[:, 0:32], buf[:, 4:36])  # partly overlapping
    leaf = torch.randn(16, 32, requires_grad=True)
    with torch.enable_grad():
        assert not native.tanh_into(leaf, out)  # autograd must see the op
    assert torch.all(out == 0)  # nothing was written by any refusal


@needs_native
def test_whether_the_kernel_runs_does_not_depend_on_where_the_output_lies() -> None:
    # an output just below a long strided input (a node's columns of a wide state) does not
    # meet it: each range is measured on its own tensor. Measured with the input's length,
    # such an output was refused, so that a fresh allocation's address decided between the
    # native kernel and torch's (different bits) and two identical runs differed
    rows, width, cols = 50, 1808, 256
    store = torch.zeros(rows * cols + 16 + rows * width)
    out = store[: rows * cols].view(rows, cols)
    x = store[rows * cols + 16 :].view(rows, width)[:, width - cols :]
    x.normal_()
    for fn in (native.tanh_into, native.gelu_into):
        out.zero_()
        assert fn(x, out)
        assert bool(out.abs().sum() > 0)
    assert native.gelu_vjp_(out, x)


def test_activations_agree_with_torch_whichever_kernel_runs() -> None:
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(256, 128, generator=gen) * 3
    # against the float64 values, within a few float32 ulps of each (an ulp of v is
    # |v|·2⁻²³ ≈ 1.2e-7·|v|): torch's float32 kernels are themselves a few ulps off, so
    # comparing two float32 results at a fixed 1e-6 fails where |gelu(x)| ≈ x is large. For
    # x < 0, GELU = x (1 + erf(x/√2)) / 2 cancels: a few ulps of erf near −1 (2⁻²⁴ each) times
    # |x| / 2 ≤ 8 (|x| ≤ 16 here) bound the absolute error by 4 · 6e-8 · 8 ≈ 2e-6 (torch's own
    # float32 GELU, with the fast paths off, was 1.01e-6 off at x ≈ −3 in one CI run)
    for name, ref, atol in (("tanh", torch.tanh, 1e-6), ("gelu", torch.nn.functional.gelu, 2e-6)):
        act = get_activation(name)
        out = torch.empty_like(x)
        act.apply_into(x, out)
        torch.testing.assert_close(out, ref(x.double()).float(), rtol=1e-6, atol=atol)
    g = torch.randn(256, 128, generator=gen)
    want = torch.ops.aten.gelu_backward(g.double(), x.double()).float()
    get_activation("gelu").vjp_(g, x, torch.nn.functional.gelu(x))
    torch.testing.assert_close(g, want, rtol=0, atol=1e-5)


_PROBE = (
    "import torch; from pcgraph.ops import native; from pcgraph.activations import get_activation;"
    "x = torch.randn(64, 128); out = torch.empty_like(x);"
    "get_activation('tanh').apply_into(x, out);"
    # against the float64 math: torch 2.13's own float32 tanh was off by 5e-5 in 4 of 60
    # processes on an AVX-512 Xeon (2 threads), so it is no reference
    "assert float((out.double() - torch.tanh(x.double())).abs().max()) <= 1e-6;"
    "print(native.available())"
)


@pytest.mark.parametrize(
    "env",
    [{"PCGRAPH_NATIVE": "0"}, {"CC": "/bin/false"}],
    ids=["switched-off", "compiler-fails"],
)
def test_without_the_kernels_torch_computes_the_same(env: dict[str, str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    full = {**os.environ, **env, "PCGRAPH_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE], env=full, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
    assert not any((tmp_path / "cache").glob("*.so"))  # no half-written library left behind


@needs_native
def test_a_bound_call_computes_what_the_checked_call_computes() -> None:
    state = torch.randn(64, 300)
    x = state[:, 100:228]  # a node's columns of a wide state
    for kernel, checked in (("tanh", native.tanh_into), ("gelu", native.gelu_into)):
        out, want = torch.empty(64, 128), torch.empty(64, 128)
        run = native.bind(kernel, x, out)
        assert run is not None
        before = out._version
        assert run() and checked(x, want)
        assert torch.equal(out, want) and out._version > before  # written, version bumped
    g, want = torch.randn(64, 128), None
    want = g.clone()
    run = native.bind("gelu_vjp", g, x)
    assert run is not None and run() and native.gelu_vjp_(want, x)
    assert torch.equal(g, want)
    # what the checked call refuses, bind refuses once and for all (None)
    assert native.bind("tanh", x.double(), torch.empty(64, 128, dtype=torch.float64)) is None
    assert native.bind("tanh", x.t(), torch.empty(128, 64)) is None
    assert native.bind("tanh", torch.randn(4, 4, requires_grad=True), torch.empty(4, 4)) is None


@needs_native
def test_a_bound_gelu_leaves_large_tensors_to_torch_on_several_threads() -> None:
    big = torch.randn(2 * native._GRAIN)
    out = torch.zeros_like(big)
    run = native.bind("gelu", big, out)
    assert run is not None
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert not run() and bool((out == 0).all())  # declined, nothing written
        torch.set_num_threads(1)
        assert run()
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("name", ["tanh", "gelu", "relu", "sigmoid", "silu"])
def test_activation_steps_equal_the_calls_they_bind(name: str) -> None:
    act = get_activation(name)
    state = torch.randn(32, 200) * 2
    x = state[:, 40:104]
    out, want = torch.empty(32, 64), torch.empty(32, 64)
    act.into_step(x, out)()
    act.apply_into(x, want)
    assert torch.equal(out, want)
    g = torch.randn(32, 64)
    g2 = g.clone()
    act.vjp_step(g, x, want)()
    act.vjp_(g2, x, want)
    assert torch.equal(g, g2)


def test_block_energies_are_half_weighted_sums_of_squares() -> None:
    """One call writes ½ w Σ ε² per block (float64 reference), leaves the other entries of the
    output alone, takes empty blocks, and lets a NaN through to its own node only."""
    if not native.available():
        pytest.skip(NO_NATIVE)
    g = torch.Generator().manual_seed(0)
    eps = torch.randn(5000, generator=g) * 3
    eps[4321] = float("nan")
    blocks = [(0, 1000, 0.5, 3), (1000, 0, 0.5, 1), (1000, 3000, 1.5, 0), (4000, 1000, 0.25, 4)]
    run = native.bind_block_energy(eps, blocks)
    assert run is not None
    out = torch.full((6,), -7.0)
    assert run(out)
    sq = eps.double().square()
    want = [1.5 * sq[1000:4000].sum(), 0.0, -7.0, 0.5 * sq[:1000].sum(), float("nan"), -7.0]
    torch.testing.assert_close(
        out.double(), torch.tensor(want, dtype=torch.float64), rtol=1e-6, atol=0, equal_nan=True
    )


def test_block_energies_refuse_what_they_cannot_read() -> None:
    if not native.available():
        pytest.skip(NO_NATIVE)
    buf = torch.zeros(100)
    assert native.bind_block_energy(buf.double(), [(0, 10, 0.5, 0)]) is None
    assert native.bind_block_energy(torch.zeros(10, 20).t(), [(0, 10, 0.5, 0)]) is None
    assert native.bind_block_energy(buf, [(95, 10, 0.5, 0)]) is None  # past the end
    run = native.bind_block_energy(buf, [(0, 10, 0.5, 2)])
    assert run is not None
    with pytest.raises(ValueError, match="float32 CPU vector"):
        run(torch.zeros(2))  # no entry for node 2
    with pytest.raises(ValueError, match="float32 CPU vector"):
        run(torch.zeros(3, dtype=torch.float64))


@needs_native
def test_the_load_check_passes_under_a_float64_default_dtype() -> None:
    """A process whose first native call comes with ``torch.set_default_dtype(torch.float64)``
    (a float64 correctness check before float32 timing, say) still loads the kernels: the
    load-time check builds its float32 vectors explicitly."""
    code = (
        "import torch; torch.set_default_dtype(torch.float64)\n"
        "from pcgraph.ops import native; print(native.available())"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True", proc.stderr


@needs_native
@pytest.mark.parametrize("bad", [None, float("nan"), float("inf"), float("-inf")])
def test_stored_blocks_find_any_non_finite_value_they_copy(bad) -> None:  # type: ignore[no-untyped-def]
    """The store's answer is what torch.isfinite(src).all() answers, for one bad value at each
    position of a row (before the aligned part, in it, in the tail), and it never looks at
    the destination's other columns."""
    state = torch.full((7, 40), float("nan"))  # the columns outside the view: never read
    view = state[:, 5:29]
    src = torch.randn(7, 24)
    src[0, 0] = 3.4e38  # the largest floats are finite
    store = native.bind_store_blocks([view], [src])
    assert store is not None
    assert store() is True
    if bad is None:
        return
    for r in (0, 3, 6):
        for c in range(24):
            saved = float(src[r, c])
            src[r, c] = bad
            assert store() is False, (r, c)
            src[r, c] = saved
    assert store() is True


@needs_native
def test_stored_blocks_land_in_their_columns_and_nowhere_else() -> None:
    """Blocks written into node columns of a [B, D] state in one native call: each lands bit
    for bit in its columns, whatever their alignment and width (tails shorter than a vector,
    a width of 1), and every other column keeps its bits (NaN sentinels)."""
    g = torch.Generator().manual_seed(0)
    state = torch.full((9, 211), float("nan"))
    spans = [(3, 4), (4, 21), (25, 64), (89, 122), (122, 211)]  # (first, end) columns
    dst = [state[:, a:b] for a, b in spans]
    src = [torch.randn(9, b - a, generator=g) for a, b in spans]
    store = native.bind_store_blocks(dst, src)
    assert store is not None
    version = state._version
    assert store() is True
    assert state._version > version  # autograd and the sweep's token see the write
    for d, s in zip(dst, src, strict=True):
        assert torch.equal(d, s)
    assert bool(state[:, :3].isnan().all()) and bool(state[:, 4:4].isnan().all())
    written = torch.zeros(211, dtype=torch.bool)
    for a, b in spans:
        written[a:b] = True
    assert bool(state[:, ~written].isnan().all())


@needs_native
def test_stored_blocks_refuse_what_they_cannot_copy() -> None:
    """Not contiguous sources, other dtypes, shapes that differ, a source in a destination's
    memory: None, and the caller copies with torch."""
    state = torch.zeros(4, 30)
    ok = torch.ones(4, 10)
    assert native.bind_store_blocks([state[:, :10]], [ok.double()]) is None
    assert native.bind_store_blocks([state[:, :10].double()], [ok.double()]) is None
    assert native.bind_store_blocks([state[:, :10]], [torch.ones(10, 4).t()]) is None
    assert native.bind_store_blocks([state[:, :10]], [torch.ones(4, 9)]) is None
    inside = state.view(-1)[5:45].view(4, 10)  # contiguous, in the destination's rows
    assert native.bind_store_blocks([state[:, :10]], [inside]) is None
    assert native.bind_store_blocks([], []) is None
    assert native.bind_store_blocks([state[:, :10]], [ok]) is not None


@needs_native
@pytest.mark.parametrize("own_error", [True, False])
def test_fused_gelu_step_is_the_exact_derivative_everywhere(own_error: bool) -> None:
    """x ← x − γ (d − GELU'(x) ⊙ m), where the kernel takes Φ(x) = GELU(x) / x from σ(x) and
    its Taylor form near 0: against float64 torch (gelu_backward) at 0, around the switch at
    |x| = 1e-3, at tiny, large and very negative x, and on random values."""
    g = torch.Generator().manual_seed(3)
    special = [0.0, 1e-7, -1e-7, 1e-4, -1e-4, 9.99e-4, -9.99e-4, 1e-3, -1e-3, 1.01e-3, -1.01e-3]
    special += [0.5, -0.5, 3.0, -3.0, 8.0, -8.0, 12.0, -12.0, 40.0, -40.0]
    x = torch.cat([torch.tensor(special), torch.randn(4 * 64 - len(special), generator=g) * 3])
    x = x.reshape(4, 64)
    s = torch.nn.functional.gelu(x)  # σ(x), as the inference loop hands it on
    d = torch.randn(4, 64, generator=g) if own_error else None
    m = torch.randn(4, 64, generator=g)
    lr = 0.5
    ref = x.double()
    deriv = torch.ops.aten.gelu_backward(torch.ones_like(ref), ref)
    want = ref - lr * ((0 if d is None else d.double()) - deriv * m.double())
    got = x.clone()
    run = native.bind_sgd_step("gelu", got, s, d, m, lr)
    assert run is not None and run()
    # float32 rounding of x's own value (|x| ≤ 40) and a derivative to ~1e-7
    torch.testing.assert_close(got.double(), want, rtol=2e-7, atol=2e-6)


@needs_native
def test_gelu_derivative_far_from_zero_is_torchs_and_leaves_no_denormal() -> None:
    """Below x ≈ −13.19, exp(−x²/2) is below the smallest normal float32. The kernels floor
    expf's argument (glibc's vector expf computes out-of-range lanes one by one, 9–16× slower)
    and zero those lanes. GELU'(x) must be torch's float64 value to float32 accuracy down to
    the floor, exactly 0 beyond it (where |GELU'(x)| < 8.4e-38), never denormal, and NaN at
    ±∞ as torch's x φ(x) = ∞ · 0."""
    inside = [-12.0, -13.0, -13.1, -13.19, 13.5, 20.0, 1e30]  # down to the floor, and x > 0
    beyond = [-13.2, -13.3, -13.5, -20.0, -50.0, -1e4, -1e30, -3e38]
    special = [float("inf"), float("-inf"), float("nan")]
    x = torch.tensor(inside + beyond + special).reshape(1, -1)
    ref = torch.ops.aten.gelu_backward(torch.ones_like(x, dtype=torch.float64), x.double())
    got = torch.ones_like(x)
    assert native.gelu_vjp_(got, x)
    n_in, n_out = len(inside), len(beyond)
    # relative: float32 rounding of −x²/2 (|x|² eps / 2 ≈ 1e-5 near the floor) and of erf
    torch.testing.assert_close(got[0, :n_in].double(), ref[0, :n_in], rtol=2e-5, atol=0)
    assert torch.all(ref[0, n_in : n_in + n_out].abs() < 8.4e-38)  # what the flush drops
    assert torch.all(got[0, n_in : n_in + n_out] == 0)
    assert torch.equal(torch.isnan(got), torch.isnan(ref))  # NaN at ±∞ and at NaN
    tiny = torch.finfo(torch.float32).tiny
    assert not torch.any((got != 0) & (got.abs() < tiny))  # no denormal derivative
    # the fused step takes the same derivative: x ← x − γ (d − GELU'(x) m)
    d, m, lr = torch.full_like(x, 0.25), torch.full_like(x, 2.0), 0.5
    step = x.clone()
    run = native.bind_sgd_step("gelu", step, torch.nn.functional.gelu(x), d, m, lr)
    assert run is not None and run()
    want = x.double() - lr * (d.double() - ref * m.double())
    assert torch.equal(torch.isnan(step), torch.isnan(want))
    ok = torch.isfinite(want)
    torch.testing.assert_close(step[ok].double(), want[ok], rtol=2e-7, atol=2e-6)


@needs_native
def test_bound_calls_hold_the_tensors_they_were_given() -> None:
    """A bound call runs on raw addresses: it must keep every tensor it was bound to alive
    (before 2026-12-07 bind() and bind_sgd_step() held only the one they wrote, and a
    temporary passed in was freed and its memory read)."""
    x = torch.randn(4, 8)
    s = torch.nn.functional.gelu(x)
    d, m = torch.randn(4, 8), torch.randn(4, 8)
    alive = [weakref.ref(t) for t in (s, d, m)]
    step = native.bind_sgd_step("gelu", x, s, d, m, 0.1)
    src = torch.randn(4, 8)
    held = weakref.ref(src)
    tanh = native.bind("tanh", src, torch.empty(4, 8))
    del s, d, m, src
    gc.collect()
    assert step is not None and tanh is not None
    assert all(r() is not None for r in alive) and held() is not None
    del step, tanh
    gc.collect()
    assert all(r() is None for r in alive) and held() is None  # and released with the call
