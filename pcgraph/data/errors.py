"""The single exception type raised by :mod:`pcgraph.data`."""

from pcgraph.errors import PCGraphError

__all__ = ["DataError"]


class DataError(PCGraphError, ValueError):
    """A dataset could not be found, read or sampled; the message names the cause and the fix."""
