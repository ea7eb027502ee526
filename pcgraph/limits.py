"""The documented limits of a run, checked before any work starts (no torch needed).

A value beyond them would not fail: it would run for hours. Each check raises one
:class:`~pcgraph.errors.ConfigError` that names the value, the limit and an estimate of the time
it would take. (Weights larger than the memory are refused where they would be allocated, by
:func:`pcgraph.compile`.)

- :data:`MAX_STEPS` inference steps per call (T): the paper uses T ≤ 64, and even a tiny graph
  spends ≥ :data:`STEP_SECONDS` per step in its Python loop;
- :data:`MAX_LAYERS` weight layers of a builder (``mlp``, ``decoder``, ``residual_mlp``):
  building and compiling a graph costs ≈ :data:`LAYER_SECONDS` per layer (μPC trains 128).
"""

from __future__ import annotations

from pcgraph.errors import ConfigError

__all__ = [
    "LAYER_SECONDS",
    "MAX_LAYERS",
    "MAX_STEPS",
    "STEP_SECONDS",
    "check_layers",
    "check_step_limit",
    "format_duration",
]

MAX_STEPS = 100_000
STEP_SECONDS = 2e-5  # a lower bound of one inference step (a 2-node graph on a fast CPU)
MAX_LAYERS = 10_000
LAYER_SECONDS = 3e-4  # measured: residual_mlp(3000, 16) is built and compiled in ≈ 1 s


def format_duration(seconds: float) -> str:
    """``90`` → ``'1.5 minutes'``: the largest unit that keeps the number ≥ 1."""
    for unit, size in (("days", 86400.0), ("hours", 3600.0), ("minutes", 60.0)):
        if seconds >= size:
            return f"{seconds / size:,.1f} {unit}"
    return f"{seconds:.1f} seconds"


def check_step_limit(T: int, name: str = "T") -> None:
    """``T`` (a whole number, checked by the caller) is at most :data:`MAX_STEPS`."""
    if T > MAX_STEPS:
        raise ConfigError(
            f"{name} = {T:,} inference steps is above the limit of {MAX_STEPS:,}: each batch "
            f"would take at least {format_duration(T * STEP_SECONDS)} "
            f"(≥ {STEP_SECONDS * 1e6:.0f} µs per step even on a tiny graph); use {name} ≤ "
            f"{MAX_STEPS:,} (the paper uses T ≤ 64)"
        )


def check_layers(builder: str, layers: int) -> None:
    """A builder's graph has at most :data:`MAX_LAYERS` weight layers."""
    if layers > MAX_LAYERS:
        raise ConfigError(
            f"{builder}: {layers:,} layers is above the limit of {MAX_LAYERS:,}: building and "
            f"compiling the graph would take about {format_duration(layers * LAYER_SECONDS)}; "
            f"use at most {MAX_LAYERS:,} layers"
        )
