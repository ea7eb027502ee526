"""Shared helpers of the benchmark scripts: devices, timing, counting, memory, environment.

Not part of the package; imported by ``bench_step.py`` and ``bench_scaling.py`` (run them from
the repository root or from ``benchmarks/``; both put this folder on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode


def add_threads_arg(parser: Any) -> None:
    """``--threads N`` (default 1); apply it with :func:`set_threads`."""
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: multi-threaded timings on a small shared machine "
        "collapse when anything else runs; 0 = torch's default)",
    )


def set_threads(n: int) -> None:
    """torch's CPU thread count, where ``n`` > 0 (0 keeps torch's default)."""
    if n > 0:
        torch.set_num_threads(n)


def resolve_device(name: str) -> torch.device:
    """``cpu`` / ``cuda`` / ``cuda:N`` → a device, with a clear error when CUDA is missing."""
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            f"--device {name}: CUDA is not available in this torch build "
            f"({torch.__version__}); run with --device cpu"
        )
    return dev


def sync(device: torch.device) -> None:
    """Wait for queued device work so that wall-clock timings are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds one call of ``fn`` takes, synchronized before and after."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def round_robin(
    fns: dict[str, Callable[[], Any]], device: torch.device, *, repeats: int, warmup: int
) -> dict[str, list[float]]:
    """Time every function ``repeats`` times, interleaved (one call of each per round, the order
    rotating every round) so that all share the machine's noise; ``warmup`` untimed rounds first.
    """
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    sync(device)
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            out[n].append(timed(fns[n], device))
    return out


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def iqr(xs: list[float]) -> tuple[float, float]:
    """25th and 75th percentiles."""
    if len(xs) < 4:
        return min(xs), max(xs)
    q = statistics.quantiles(xs, n=4)
    return float(q[0]), float(q[2])


# --- counting matmuls and FLOPs -------------------------------------------------------------
_MATMUL_OPS = {
    "mm",
    "addmm",
    "bmm",
    "baddbmm",
    "matmul",
    "linear",
    "mv",
    "addmv",
    "dot",
    "_linear_pointwise",  # oneDNN's linear product (pcgraph.ops.matmul)
}


def _register_onednn_flops() -> None:
    """FLOPs of oneDNN's linear product (s [M, K] · W [N, K]ᵀ: 2MNK), which torch's counter
    does not know; without it the products pcgraph sends to oneDNN would count as free."""
    from torch.utils.flop_counter import register_flop_formula

    op = getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    if op is None:
        return

    @register_flop_formula(op)  # type: ignore[misc]
    def _flops(x_shape, w_shape, *args, **kwargs) -> int:  # type: ignore[no-untyped-def]
        m = 1
        for d in x_shape[:-1]:
            m *= d
        return 2 * m * w_shape[0] * w_shape[1]


_register_onednn_flops()


class _MatmulCounter(TorchDispatchMode):
    """Counts the aten matrix-product calls that actually run (after decomposition)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.by_op: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        name = func.overloadpacket.__name__
        if name in _MATMUL_OPS:
            self.count += 1
            self.by_op[name] = self.by_op.get(name, 0) + 1
        return func(*args, **(kwargs or {}))


def count_matmuls_and_flops(fn: Callable[[], Any]) -> tuple[int, int]:
    """(number of matmul kernels, FLOPs counted by torch's FlopCounterMode) of one call."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = _MatmulCounter()
    with counter:
        fn()
    flops = FlopCounterMode(display=False)
    with flops:
        fn()
    return counter.count, int(flops.get_total_flops())


# --- memory ----------------------------------------------------------------------------------
def rss_bytes() -> int:
    """Resident set size of this process now."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:  # pragma: no cover - no /proc and no psutil
        return 0


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process; False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """Peak resident set size (VmHWM) since the last :func:`reset_peak_rss`."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


@contextlib.contextmanager
def peak_memory(device: torch.device) -> Iterator[dict[str, int]]:
    """Peak memory of the enclosed block: CUDA allocator peak on GPUs, else RSS growth over the
    starting RSS (torch's CPU allocations are invisible to ``tracemalloc``)."""
    out: dict[str, int] = {}
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        yield out
        sync(device)
        out["peak_bytes"] = int(torch.cuda.max_memory_allocated(device) - base)
        out["kind"] = 1  # cuda allocator
        return
    base = rss_bytes()
    ok = reset_peak_rss()
    yield out
    peak = peak_rss_bytes() if ok else rss_bytes()
    out["peak_bytes"] = max(0, peak - base)
    out["kind"] = 0  # RSS


# --- environment -------------------------------------------------------------------------------
def environment(device: torch.device) -> dict[str, Any]:
    """What the figures were measured on."""
    env: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    env.update(_git_state())
    return env


def _git_state() -> dict[str, Any]:
    """The commit the package was measured at and whether the tree had local changes."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def git(*cmd: str) -> str:
        done = subprocess.run(
            ["git", *cmd], cwd=root, capture_output=True, text=True, timeout=10, check=True
        )
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "pcgraph")
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git_commit": commit, "pcgraph_modified": bool(dirty)}


def _cpu_name() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def fmt_ms(s: float) -> str:
    return f"{s * 1e3:8.3f}"
