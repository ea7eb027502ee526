"""Fast CPU kernels for the activations whose torch kernels are slow: tanh and GELU in float32.

torch's CPU tanh computes each element to ~0.5 ulp with a slow vector routine (measured 2.9 ns per
float32 element on an AVX-512 EPYC, 3.8 ns on an AVX2 one; its sigmoid 0.24 and 1.3 ns). XLA,
and so PCX, uses a rational approximation that vectorizes. :file:`_native.c` holds that
approximation (≤ 2.3 ulp, measured against float64 over [−12, 12]) and the exact erf-form GELU
and its derivative on glibc's vector ``erff``/``expf``. On the AVX2 EPYC, 256 × 128 floats, one
thread: tanh 17 µs against 124 µs (torch.tanh) and 59 µs (2σ(2x) − 1); GELU 44 against 71 µs.

Beside them, three kernels that save the inference loop whole torch calls: a node's fused plain
SGD step x ← x − γ (δ − σ' ⊙ m) (:func:`bind_sgd_step`), the per-node energies ½ w Σ ε² of a
node-blocked error buffer in one call (:func:`bind_block_energy`, sums in double) and the write
of contiguous blocks into columns of the state in one call, which also says whether
every value written is finite (:func:`bind_store_blocks`).

The C file is compiled once per machine and loaded by :mod:`pcgraph.ops.native_build`. Where
there is no compiler, the build fails, or the loaded library
does not reproduce torch's results on a check vector, every call returns False and the caller
uses torch's kernel: nothing else changes. ``PCGRAPH_NATIVE=0`` turns these kernels off;
``PCGRAPH_FAST=0`` or :func:`pcgraph.fast_paths` ``(False)`` turn them off with every other fast
path (:mod:`pcgraph.fast`): then nothing is compiled or loaded, :func:`available` is False, every
``bind*`` returns None and every call, bound ones included, returns False (None for the store).

Each function returns whether it did the work: only for float32 CPU tensors outside autograd and
``torch.compile`` whose rows (the first dimension) are contiguous, and for outputs that do not
partly overlap their inputs.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

import torch

from pcgraph import fast
from pcgraph.cache import BoundedCache
from pcgraph.ops import native_build
from pcgraph.ops.native_build import available, library_path

__all__ = [
    "SGD_KINDS",
    "Bound",
    "available",
    "bind",
    "bind_block_energy",
    "bind_sgd_step",
    "bind_store_blocks",
    "gelu_into",
    "gelu_vjp_",
    "library_path",
    "tanh_into",
]

# torch runs an elementwise kernel on several threads from this many elements (at::GRAIN_SIZE);
# the C kernels use one, so GELU (only ~1.6× faster per thread) goes native below it or on one
# thread; tanh (≥ 3× faster per thread) always
_GRAIN = 32768


def _library() -> ctypes.CDLL | None:
    """The loaded kernels (:func:`pcgraph.ops.native_build.library`), or None."""
    return native_build.library()


def _rows(t: torch.Tensor) -> tuple[int, int, int] | None:
    """(rows, columns, row stride) when t is rows of contiguous floats, else None."""
    if t.dim() == 0:
        return None
    if t.dim() == 1:
        return (1, t.shape[0], t.shape[0]) if t.stride(0) == 1 or t.shape[0] <= 1 else None
    rows = t.shape[0]
    expected = 1
    for size, stride in zip(reversed(t.shape[1:]), reversed(t.stride()[1:]), strict=True):
        if size != 1 and stride != expected:
            return None
        expected *= size
    return rows, expected, t.stride(0) if rows > 1 else expected


def _span(r: tuple[int, int, int]) -> int:
    """Bytes from a tensor's first float to one past its last, for (rows, columns, stride)."""
    return 4 * ((r[0] - 1) * r[2] + r[1])


def _disjoint_or_same(
    a: torch.Tensor, b: torch.Tensor, ra: tuple[int, int, int], rb: tuple[int, int, int]
) -> bool:
    """Whether a and b are the same view (in place) or their memory ranges do not meet. Each
    range is the tensor's own: with one length for both, a fresh output allocated just below
    a long strided input would be refused by address, and that call would take torch's kernel
    (other bits) in one run and the native one in the next."""
    if a.data_ptr() == b.data_ptr() and a.stride() == b.stride():
        return True
    lo_a, lo_b = a.data_ptr(), b.data_ptr()
    return lo_a + _span(ra) <= lo_b or lo_b + _span(rb) <= lo_a


def _plan(a: torch.Tensor, b: torch.Tensor) -> tuple[int, int, int, int] | None:
    """The kernel's (rows, columns, a's row stride, b's row stride) for this pair, or None
    when the pair is not for it (dtype, device, layout, shapes, a partial overlap)."""
    if a.shape != b.shape or not all(
        t.dtype == torch.float32 and t.is_cpu and t.layout == torch.strided for t in (a, b)
    ):
        return None
    ra, rb = _rows(a), _rows(b)
    if ra is None or rb is None or ra[:2] != rb[:2] or not _disjoint_or_same(a, b, ra, rb):
        return None
    return ra[0], ra[1], ra[2], rb[2]


# the plans of the pairs seen so far: the inference loop calls the kernels on the same buffer
# views every step, and deciding a plan costs several times the call itself (~9 µs)
_PLANS: BoundedCache[tuple[object, ...], tuple[int, int, int, int] | None] = BoundedCache(1024)


def _binary(name: str, a: torch.Tensor, b: torch.Tensor, *, threaded_torch_wins: bool) -> bool:
    """Run kernel ``name`` on (a, b) of one shape: ``b`` is written (``a`` for the vjp, which
    reads ``b`` = x), and its version is bumped. With ``threaded_torch_wins``, tensors large
    enough for torch to use several threads are left to torch."""
    if (
        not fast.enabled()
        or torch.compiler.is_compiling()
        or (torch.is_grad_enabled() and (a.requires_grad or b.requires_grad))
    ):
        return False
    if threaded_torch_wins and a.numel() > _GRAIN and torch.get_num_threads() > 1:
        return False
    key: tuple[object, ...] = (a.data_ptr(), b.data_ptr(), a.shape, a.stride(), b.stride())
    key += (b.shape, a.dtype, b.dtype, a.is_cpu, b.is_cpu)  # all that the plan depends on
    plan = _PLANS.get(key)
    if plan is None:
        if key in _PLANS:  # decided before: not for the kernel
            return False
        plan = _PLANS.put(key, _plan(a, b))
        if plan is None:
            return False
    if plan[0] * plan[1] == 0:
        return True
    lib = _library()
    if lib is None:
        return False
    getattr(lib, name)(a.data_ptr(), b.data_ptr(), *plan)
    torch.autograd.graph.increment_version(a if name.endswith("vjp_f32") else b)  # written
    return True  # behind torch's back: in-place checks must see it


def tanh_into(x: torch.Tensor, out: torch.Tensor) -> bool:
    """out ← tanh(x) by the native kernel; False (nothing written) where it does not apply."""
    return _binary("pc_tanh_f32", x, out, threaded_torch_wins=False)


def gelu_into(x: torch.Tensor, out: torch.Tensor) -> bool:
    """out ← x Φ(x) (exact GELU) by the native kernel; False where it does not apply."""
    return _binary("pc_gelu_f32", x, out, threaded_torch_wins=True)


def gelu_vjp_(g: torch.Tensor, x: torch.Tensor) -> bool:
    """g ← g ⊙ GELU'(x) in place by the native kernel; False where it does not apply."""
    return _binary("pc_gelu_vjp_f32", g, x, threaded_torch_wins=True)


Bound = Callable[[], bool]

# kernel → (C function, whether torch takes large tensors on several threads instead)
_KERNELS = {
    "tanh": ("pc_tanh_f32", False),
    "gelu": ("pc_gelu_f32", True),
    "gelu_vjp": ("pc_gelu_vjp_f32", True),
}


def bind(kernel: str, a: torch.Tensor, b: torch.Tensor) -> Bound | None:
    """The kernel's call on this fixed pair, every check done once now: a function that runs
    it and returns True, or returns False where it must not run at that moment (inside
    ``torch.compile``; GELU on a tensor large enough for torch's threads when more than one is
    set). None when the pair is not for the kernel at all (see :func:`tanh_into`).

    For loops that call the same kernel on the same buffer views thousands of times: the call
    then costs the C function and a version bump, without the per-call plan lookup (~5 µs).
    The function holds the tensors, so their memory lives as long as it does (bind views
    of buffers that are not resized in place). ``kernel``: ``tanh`` (b ← tanh(a)), ``gelu``
    (b ← GELU(a)) or ``gelu_vjp`` (a ← a ⊙ GELU'(b)).
    """
    name, threaded_torch_wins = _KERNELS[kernel]
    if a.requires_grad or b.requires_grad:
        return None
    plan = _plan(a, b)
    lib = _library()
    if plan is None or lib is None:
        return None
    fn = getattr(lib, name)
    args = (a.data_ptr(), b.data_ptr(), *plan)
    keep = (a, b)  # the addresses stay valid while the bound call lives
    written = 0 if kernel == "gelu_vjp" else 1
    big = threaded_torch_wins and a.numel() > _GRAIN
    empty = plan[0] * plan[1] == 0
    is_compiling, on = torch.compiler.is_compiling, fast.enabled
    bump = torch.autograd.graph.increment_version

    def run() -> bool:
        if is_compiling() or not on() or (big and torch.get_num_threads() > 1):
            return False
        if not empty:
            fn(*args)
            bump(keep[written])  # behind torch's back: in-place checks must see it
        return True

    return run


def bind_store_blocks(
    dst: list[torch.Tensor], src: list[torch.Tensor]
) -> Callable[[], bool | None] | None:
    """``dst[k] ← src[k]`` for every k as one native call, bound to these
    tensors: each ``src[k]`` contiguous, each ``dst[k]`` of its shape in rows of contiguous
    floats (a node's columns of the state), float32 on the CPU, no source in a destination's
    memory. The function returns whether every value copied is finite, or None (nothing
    written) inside ``torch.compile``. None where it does not apply or the library is not
    built (the caller copies with torch)."""
    lib = _library()
    if lib is None or not dst or len(dst) != len(src):
        return None
    found = [_plan(s, d) for s, d in zip(src, dst, strict=True)]
    plans = [p for p in found if p is not None]
    if len(plans) < len(found) or any(
        not s.is_contiguous() or s.requires_grad or d.requires_grad
        for s, d in zip(src, dst, strict=True)
    ):
        return None

    # the blocks are copied one after another, as by one copy_ each: a destination may share
    # rows with another (columns of one state), never memory with a source. In address order,
    # a range meets one of the other kind iff it starts below the furthest end of those seen.
    ranges = sorted(
        (t.data_ptr(), t.data_ptr() + _span(_rows(t)), kind)  # type: ignore[arg-type]
        for kind, group in enumerate((dst, src))
        for t in group
    )
    reach = [0, 0]  # the furthest end so far of a destination, of a source
    for lo, hi, kind in ranges:
        if lo < reach[1 - kind]:
            return None
        reach[kind] = max(reach[kind], hi)
    k = len(dst)

    def arr(values: list[int]) -> ctypes.Array[ctypes.c_int64]:
        return (ctypes.c_int64 * k)(*values)

    args = (
        arr([d.data_ptr() for d in dst]),
        arr([s.data_ptr() for s in src]),
        arr([p[0] for p in plans]),
        arr([p[1] for p in plans]),
        arr([p[3] for p in plans]),  # dst's row stride
        k,
    )
    fn, is_compiling, on = lib.pc_store_blocks_f32, torch.compiler.is_compiling, fast.enabled
    keep = (list(dst), list(src))  # the addresses stay valid while the bound call lives

    def run() -> bool | None:
        if is_compiling() or not on():
            return None
        finite = bool(fn(*args))
        for d in keep[0]:
            torch.autograd.graph.increment_version(d)
        return finite

    return run


BoundEnergy = Callable[[torch.Tensor], bool]


def bind_block_energy(
    buf: torch.Tensor, blocks: list[tuple[int, int, float, int]]
) -> BoundEnergy | None:
    """Per-node energies ½ w Σ ε² of a node-blocked float32 CPU buffer in one native call,
    bound to ``buf``: ``blocks`` = (first element, length, ½ w, node index) per node. The
    function writes out[node] for each block into a float32 CPU vector ``out`` (the other
    entries untouched) and returns True; False (nothing written) inside ``torch.compile``.
    Sums are accumulated in double. None where it does not apply (not a contiguous float32 CPU
    buffer, a block outside it, no native library)."""
    lib = _library()
    if (
        lib is None
        or buf.dtype != torch.float32
        or not buf.is_cpu
        or not buf.is_contiguous()
        or buf.requires_grad
        or any(a < 0 or n < 0 or a + n > buf.numel() for a, n, _, _ in blocks)
    ):
        return None
    k = len(blocks)
    off = (ctypes.c_int64 * k)(*(a for a, _, _, _ in blocks))
    length = (ctypes.c_int64 * k)(*(n for _, n, _, _ in blocks))
    scale = (ctypes.c_double * k)(*(w for _, _, w, _ in blocks))
    index = (ctypes.c_int64 * k)(*(i for _, _, _, i in blocks))
    top = max((i for _, _, _, i in blocks), default=-1)
    fn, base, is_compiling = lib.pc_block_energy_f32, buf.data_ptr(), torch.compiler.is_compiling
    keep, on = buf, fast.enabled  # the address stays valid while the bound call lives

    def run(out: torch.Tensor) -> bool:
        if is_compiling() or not on() or keep.data_ptr() != base:
            return False
        if (
            out.dtype != torch.float32
            or not out.is_cpu
            or out.numel() <= top
            or (out.dim() != 1 or out.stride(0) != 1)
        ):
            raise ValueError("block energies go into a contiguous float32 CPU vector [N]")
        fn(base, off, length, scale, index, k, out.data_ptr())
        torch.autograd.graph.increment_version(out)
        return True

    return run


# the σ' of the fused SGD step, by activation: from σ(x) (tanh, sigmoid, relu; gelu: Φ = σ(x)/x)
SGD_KINDS = {"identity": 0, "tanh": 1, "sigmoid": 2, "relu": 3, "gelu": 4}


def bind_sgd_step(
    activation: str,
    x: torch.Tensor,
    s: torch.Tensor,
    d: torch.Tensor | None,
    m: torch.Tensor,
    lr: float,
) -> Bound | None:
    """One fused plain gradient step of a node, bound to fixed tensors (see :func:`bind`):
    x ← x − γ (d − σ'(x) ⊙ m) in one pass, with s = σ(x), d the node's own δ (None: no own
    error) and m its message Σ δ_c W_c. The three kernels it replaces (σ' ⊙ m, d − ·, the
    update) compute the same to float32 rounding. None where it does not apply: not float32 on
    the CPU, shapes or row layouts the kernel does not take, an operand overlapping x (s may
    be x itself, for the identity), an activation without a closed-form σ' here.
    """
    kind = SGD_KINDS.get(activation)
    lib = _library()
    reads = [t for t in (s, d, m) if t is not None]
    if kind is None or lib is None or x.requires_grad or any(t.requires_grad for t in reads):
        return None
    plans = [_plan(x, t) for t in reads]  # same shape, row layouts, no partial overlap with x
    if any(p is None for p in plans):
        return None
    for t in (d, m):  # only σ(x) may be x itself (the identity); nothing else may alias it
        if t is not None and t.data_ptr() == x.data_ptr():
            return None
    stride = {id(t): p[3] for t, p in zip(reads, plans, strict=True)}  # type: ignore[index]
    n_rows, n_cols, x_stride, _ = plans[0]  # type: ignore[misc]
    args = (
        x.data_ptr(),
        s.data_ptr(),
        None if d is None else d.data_ptr(),
        m.data_ptr(),
        float(lr),
        kind,
        n_rows,
        n_cols,
        x_stride,
        stride[id(s)],
        0 if d is None else stride[id(d)],
        stride[id(m)],
    )
    fn = lib.pc_sgd_step_f32
    keep = (x, s, d, m)  # the addresses stay valid while the bound call lives
    is_compiling, on = torch.compiler.is_compiling, fast.enabled
    bump = torch.autograd.graph.increment_version
    empty = n_rows * n_cols == 0

    def run() -> bool:
        if is_compiling() or not on():
            return False
        if not empty:
            fn(*args)
            bump(keep[0])
        return True

    return run
