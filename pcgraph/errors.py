"""Exceptions raised by pcgraph: one family, each message names the place and the fix."""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ClampError",
    "ConfigError",
    "EnergyError",
    "InitError",
    "PCGraphError",
    "SpecError",
]


class PCGraphError(Exception):
    """Base class of every error pcgraph raises on bad input."""


class SpecError(PCGraphError, ValueError):
    """A graph specification (YAML, NetworkX or Python) is invalid."""


class ClampError(PCGraphError, ValueError):
    """A clamp set or the data given for it does not fit the graph."""


class InitError(PCGraphError, ValueError):
    """An initialization cannot be used on this graph, clamp set or batch."""


class ConfigError(PCGraphError, ValueError):
    """An option of inference, training or a command is invalid (a number out of range, an
    unknown choice, a device this machine lacks, an output path that cannot be written)."""


class EnergyError(PCGraphError, FloatingPointError):
    """The energy became non-finite during inference or learning."""


class CheckpointError(PCGraphError, ValueError):
    """A checkpoint is missing, corrupt, or does not match the graph."""
