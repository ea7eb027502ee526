"""One bounded least-recently-used cache, used wherever pcgraph keeps per-size state.

Buffers per batch size, state tensors per batch size, compiled steps and CUDA graphs per shape:
a training size, an evaluation size and a last partial batch are the usual working set, so a
few entries suffice, and a run that evaluates at many sizes never grows memory without bound.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

__all__ = ["BoundedCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """A mapping that keeps the ``size`` most recently used entries.

    Args:
        size: the most entries kept (≥ 1); adding one more evicts the least recently used.
    """

    def __init__(self, size: int = 4) -> None:
        if size < 1:
            raise ValueError(f"BoundedCache size must be ≥ 1, got {size}")
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        """The entry for ``key`` (now the most recently used), or None."""
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> V:
        """Store ``value`` under ``key`` (evicting the least recently used entry if full)."""
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return value

    def get_or_create(self, key: K, factory: Callable[[], V]) -> V:
        """The entry for ``key``, built by ``factory()`` on a miss."""
        value = self.get(key)
        return self.put(key, factory()) if value is None else value

    def items(self) -> list[tuple[K, V]]:
        """The entries, least recently used first (a copy)."""
        return list(self._items.items())

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[K]:
        return iter(self._items)
