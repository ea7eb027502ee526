"""The backend table: ``compile(spec)`` → a network, and its inference program per clamp set.

A backend is a network class (parameters and state layout) with the program class that runs its
inference step. Both implement one protocol (:class:`pcgraph.compiler.program.Program`), so the
engine and the initializers never ask which backend they hold:

- ``dense``: :class:`PCNetwork` + :class:`InferenceProgram`, groups of neurons, a kernel per edge;
- ``sparse``: :class:`SparsePCNetwork` + :class:`SparseProgram`, many tiny groups, sparse wiring.

This module is the only one that knows both: the network and program modules import neither
each other's subclasses nor this table.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from pcgraph import fast
from pcgraph.compiler.network import PCNetwork
from pcgraph.compiler.program import InferenceProgram
from pcgraph.compiler.protocol import Program
from pcgraph.compiler.sparse import SparsePCNetwork, SparseProgram, sparse_unsupported_reason
from pcgraph.errors import ConfigError, SpecError
from pcgraph.schema import GraphSpec

__all__ = ["BACKENDS", "Backend", "compile", "program_for"]


@dataclass(frozen=True)
class Backend:
    """A network class and the program class that runs its inference."""

    network: type[PCNetwork]
    program: Callable[..., Program]  # a Program class, built as program(net, clamp)


BACKENDS: dict[str, Backend] = {
    "dense": Backend(PCNetwork, InferenceProgram),
    "sparse": Backend(SparsePCNetwork, SparseProgram),
}


def compile(
    spec: GraphSpec | str | os.PathLike[str],
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    seed: int | None = None,
    backend: str = "auto",
    modules: Mapping[tuple[str, str], torch.nn.Module] | None = None,
) -> PCNetwork:
    """Compile a spec (or a YAML path) into a :class:`PCNetwork`.

    Args:
        spec: a :class:`GraphSpec` or a path to a topology YAML file.
        device, dtype: where the parameters and states live.
        seed: seeds the parameter initialization (torch's defaults: Kaiming-uniform) so that the
            same seed gives the same network.
        backend: ``dense`` (one kernel per edge), ``sparse`` (neuron-level message passing over
            an edge_index, see :mod:`pcgraph.compiler.sparse`), or ``auto``: sparse for graphs of
            many tiny groups (≥ 128 nodes of ≤ 16 neurons, linear edges), dense otherwise.
        modules: the module of each edge declared with ``op: module``, by (source, target).
            The module becomes the edge's whole transformation f_ji (moved to ``device`` and
            ``dtype`` in place); its parameters are the network's.
    """
    fast.check_environment()  # an unknown PCGRAPH_FAST value: one clear error, here
    if isinstance(spec, str | os.PathLike):
        spec = GraphSpec.from_yaml(spec)
    elif not isinstance(spec, GraphSpec):
        raise SpecError(
            f"compile() takes a GraphSpec or the path of a topology YAML file, got "
            f"{type(spec).__name__}; build one with GraphSpec.from_dict, from_networkx or pc.mlp"
        )
    device, dtype = _check_target(device, dtype)
    _check_memory(spec, dtype)
    if backend not in ("auto", *BACKENDS):
        raise SpecError(f"unknown backend {backend!r}; valid: auto, {', '.join(BACKENDS)}")
    if backend == "auto":
        tiny = len(spec.nodes) >= 128 and max(n.size for n in spec.nodes) <= 16
        backend = "sparse" if tiny and sparse_unsupported_reason(spec) is None else "dense"
    cls = BACKENDS[backend].network
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        if modules:
            return cls(spec, device=device, dtype=dtype, modules=modules)
        return cls(spec, device=device, dtype=dtype)


def _check_target(
    device: torch.device | str | None, dtype: torch.dtype | None
) -> tuple[torch.device | None, torch.dtype | None]:
    """A device this machine has and a floating dtype (ConfigError otherwise)."""
    if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
        raise ConfigError(
            f"dtype={dtype!r}: predictive coding needs floating-point states and weights; use "
            "torch.float32 (the default) or torch.float64"
        )
    if device is None:
        return None, dtype
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"device={device!r} is not a device; use 'cpu' or 'cuda'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r}: CUDA is not available here; use 'cpu'")
    if dev.type not in ("cpu", "cuda", "meta"):
        raise ConfigError(f"device={device!r}: pcgraph runs on 'cpu' or 'cuda'")
    return dev, dtype


def _available_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def _check_memory(spec: GraphSpec, dtype: torch.dtype | None) -> None:
    """Refuse, before allocating, a network whose dense edges alone exceed the free memory."""
    size = (dtype or torch.get_default_dtype()).itemsize
    nodes = {n.name: n.size for n in spec.nodes}
    dense = [
        (nodes[e.source] * nodes[e.target], e) for e in spec.edges if e.op in ("linear", "dense")
    ]
    total = sum(n for n, _ in dense) * size
    free = _available_bytes()
    if free is None or total <= free:
        return
    largest, edge = max(dense, key=lambda item: item[0])
    raise ConfigError(
        f"the network's weights need {total / 2**30:.1f} GiB but {free / 2**30:.1f} GiB are free; "
        f"the largest is edge {edge.source} → {edge.target} ({largest:,} weights); shrink the "
        "nodes or use a sparse topology"
    )


def program_for(net: PCNetwork, clamp: frozenset[str]) -> Program:
    """The cached program of ``net`` for ``clamp`` (built on first use, one per clamp set)."""
    prog = net.program_cache.get(clamp)
    if prog is None:
        prog = BACKENDS[net.backend].program(net, clamp)
        net.program_cache[clamp] = prog
    return prog
