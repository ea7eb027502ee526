"""Building, loading and checking the native C kernels of :mod:`pcgraph.ops.native`.

The C file :file:`_native.c` is compiled once per machine with the system's C compiler
(``$CC``, else ``cc``) into the user's cache (``$PCGRAPH_CACHE_DIR``, else
``$XDG_CACHE_HOME/pcgraph`` or ``~/.cache/pcgraph``), named by a hash of the source, the flags,
the compiler and the processor, and loaded with :mod:`ctypes`. A library that does not reproduce
torch's results on a check vector is never used. Nothing here runs while the fast paths are off
(:mod:`pcgraph.fast`) or with ``PCGRAPH_NATIVE=0``.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

from pcgraph import fast

__all__ = ["available", "library", "library_path"]

_log = logging.getLogger(__name__)
_SOURCE = Path(__file__).with_name("_native.c")
_FLAGS = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd", "-fPIC", "-shared"]
_ARCH = ["-march=native"]
_LIBS = ["-lmvec", "-lm"]

_lib: ctypes.CDLL | None = None
_tried = False
_path: Path | None = None


def _cache_dir() -> Path:
    env = os.environ.get("PCGRAPH_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "pcgraph"


def _cpu_id() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return platform.processor()
    lines = [ln for ln in text.splitlines() if ln.startswith(("flags", "model name"))]
    return "\n".join(sorted(set(lines)))


def _compiler() -> str | None:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    return cc if cc and shutil.which(cc) else None


def _build(cc: str) -> Path | None:
    """Compile the C kernels into the cache (atomically: a finished file or none)."""
    source = _SOURCE.read_bytes()
    try:
        version = subprocess.run(
            [cc, "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for arch in (_ARCH, []):  # -march=native where the compiler knows it
        flags = [*_FLAGS, *arch]
        key = hashlib.sha256(
            b"\0".join([source, " ".join(flags).encode(), version.encode(), _cpu_id().encode()])
        ).hexdigest()[:16]
        for root in (_cache_dir(), Path(tempfile.gettempdir()) / "pcgraph-cache"):
            target = root / f"native-{key}.so"
            if target.exists():
                return target
            try:
                root.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=".native-", suffix=".so", dir=root)
                os.close(fd)
            except OSError:
                continue  # not writable: the next root
            try:
                proc = subprocess.run(
                    [cc, *flags, str(_SOURCE), "-o", tmp, *_LIBS],
                    capture_output=True,
                    text=True,
                    timeout=120,
                    check=False,
                )
                if proc.returncode == 0:
                    os.replace(tmp, target)
                    return target
                _log.debug("pcgraph native kernels: %s failed: %s", cc, proc.stderr[-2000:])
            except (OSError, subprocess.SubprocessError) as err:
                _log.debug("pcgraph native kernels: %s", err)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            break  # the compile itself failed: try without -march=native
    return None


def _load() -> ctypes.CDLL | None:
    global _tried, _lib, _path
    _tried = True
    if os.environ.get("PCGRAPH_NATIVE", "1").strip().lower() in ("0", "off", "false", "no"):
        return None
    cc = _compiler()
    path = _build(cc) if cc is not None else None
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as err:
        _log.debug("pcgraph native kernels: cannot load %s: %s", path, err)
        return None
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    for name in ("pc_tanh_f32", "pc_gelu_f32", "pc_gelu_vjp_f32"):
        fn = getattr(lib, name)
        fn.argtypes = [ptr, ptr, i64, i64, i64, i64]
        fn.restype = None
    step = lib.pc_sgd_step_f32
    step.argtypes = [ptr, ptr, ptr, ptr, ctypes.c_float, ctypes.c_int, i64, i64, i64, i64, i64, i64]
    step.restype = None
    energy = lib.pc_block_energy_f32
    energy.argtypes = [ptr, ptr, ptr, ptr, ptr, i64, ptr]
    energy.restype = None
    store = lib.pc_store_blocks_f32
    store.argtypes = [ptr, ptr, ptr, ptr, ptr, i64]
    store.restype = ctypes.c_int
    if not _agrees(lib):
        _log.warning("pcgraph native kernels at %s disagree with torch; using torch's", path)
        return None
    _lib, _path = lib, path
    return lib


def _agrees(lib: ctypes.CDLL) -> bool:
    """The loaded kernels reproduce torch's float64 results on a check vector (a miscompiled or
    stale library is never used)."""
    x = torch.linspace(-12.0, 12.0, 4001, dtype=torch.float32).reshape(1, -1)
    n = x.shape[1]
    ref = x.double()
    ok = True
    for fn, want, tol in (
        (lib.pc_tanh_f32, torch.tanh(ref), 1e-6),
        (lib.pc_gelu_f32, torch.nn.functional.gelu(ref), 2e-6),
    ):
        out = torch.empty_like(x)
        fn(x.data_ptr(), out.data_ptr(), 1, n, n, n)
        ok &= bool((out.double() - want).abs().max() <= tol)
    g = torch.ones_like(x)
    lib.pc_gelu_vjp_f32(g.data_ptr(), x.data_ptr(), 1, n, n, n)
    ok &= bool(
        (g.double() - torch.ops.aten.gelu_backward(torch.ones_like(ref), ref)).abs().max() <= 2e-6
    )
    e = torch.linspace(-3.0, 3.0, 1000, dtype=torch.float32)
    out = torch.full((3,), -1.0, dtype=torch.float32)
    off, ln = (ctypes.c_int64 * 2)(0, 600), (ctypes.c_int64 * 2)(600, 400)
    scale, idx = (ctypes.c_double * 2)(0.5, 2.0), (ctypes.c_int64 * 2)(2, 0)
    lib.pc_block_energy_f32(e.data_ptr(), off, ln, scale, idx, 2, out.data_ptr())
    sq = e.double().square()
    want = torch.tensor([2.0 * float(sq[600:].sum()), -1.0, 0.5 * float(sq[:600].sum())])
    ok &= bool(torch.allclose(out.double(), want.double(), rtol=1e-6))
    # a block into rows that start off any alignment, with a tail shorter than a vector
    wide = torch.zeros(5, 71, dtype=torch.float32)
    src = torch.arange(5 * 37, dtype=torch.float32).reshape(5, 37)
    dst = wide[:, 3:40]
    args = [(ctypes.c_int64 * 1)(v) for v in (dst.data_ptr(), src.data_ptr(), 5, 37, 71)]
    ok &= lib.pc_store_blocks_f32(*args, 1) == 1
    outside = float(wide[:, :3].abs().sum() + wide[:, 40:].abs().sum())
    ok &= bool(torch.equal(dst, src)) and outside == 0.0
    src[0, 0], src[0, 1] = -3.4e38, 3.4e38  # the largest finite floats
    ok &= lib.pc_store_blocks_f32(*args, 1) == 1
    for bad in (float("nan"), float("inf"), float("-inf")):
        for r, c in ((0, 0), (2, 20), (4, 36)):  # before the aligned part, in it, in the tail
            saved = float(src[r, c])
            src[r, c] = bad
            ok &= lib.pc_store_blocks_f32(*args, 1) == 0
            src[r, c] = saved
    return ok


def library() -> ctypes.CDLL | None:
    """The loaded kernels, or None. The gate of every kernel here: with the fast paths off
    (:func:`pcgraph.fast.enabled`) None, without starting a compiler, so that each caller
    takes its reference, torch's own kernel."""
    if not fast.enabled():
        return None
    return _lib if _tried else _load()


def available() -> bool:
    """Whether the native kernels are built, loaded and checked (builds them on first call);
    False while the fast paths are off."""
    return library() is not None


def library_path() -> Path | None:
    """The shared library in use, or None (also while the fast paths are off)."""
    return _path if library() is not None else None
