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

from dataclasses import dataclass

import torch

from pcgraph.compiler.network import PCNetwork
from pcgraph.compiler.program import InferenceProgram
from pcgraph.compiler.protocol import Program
from pcgraph.compiler.sparse import SparsePCNetwork, SparseProgram, sparse_unsupported_reason
from pcgraph.errors import SpecError
from pcgraph.schema import GraphSpec

__all__ = ["BACKENDS", "Backend", "compile", "program_for"]


@dataclass(frozen=True)
class Backend:
    """A network class and the program class that runs its inference."""

    network: type[PCNetwork]
    program: type[InferenceProgram]


BACKENDS: dict[str, Backend] = {
    "dense": Backend(PCNetwork, InferenceProgram),
    "sparse": Backend(SparsePCNetwork, SparseProgram),
}


def compile(
    spec: GraphSpec | str,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    seed: int | None = None,
    backend: str = "auto",
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
    """
    if not isinstance(spec, GraphSpec):
        spec = GraphSpec.from_yaml(spec)
    if backend not in ("auto", *BACKENDS):
        raise SpecError(f"unknown backend {backend!r}; valid: auto, {', '.join(BACKENDS)}")
    if backend == "auto":
        tiny = len(spec.nodes) >= 128 and max(n.size for n in spec.nodes) <= 16
        backend = "sparse" if tiny and sparse_unsupported_reason(spec) is None else "dense"
    cls = BACKENDS[backend].network
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        return cls(spec, device=device, dtype=dtype)


def program_for(net: PCNetwork, clamp: frozenset[str]) -> Program:
    """The cached program of ``net`` for ``clamp`` (built on first use, one per clamp set)."""
    prog = net._programs.get(clamp)
    if prog is None:
        prog = BACKENDS[net.backend].program(net, clamp)
        net._programs[clamp] = prog
    return prog
