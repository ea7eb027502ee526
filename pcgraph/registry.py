"""Name → object registries with normalised names and helpful errors, one per kind of name."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Generic, TypeVar

from pcgraph.errors import SpecError

__all__ = ["Registry", "normalize_name"]

T = TypeVar("T")


def normalize_name(name: str) -> str:
    """Lower-case a name and unify separators: ``"Conv-Transpose2D"`` → ``"conv_transpose2d"``."""
    return name.strip().lower().replace("-", "_").replace(" ", "_")


class Registry(Generic[T]):
    """A registry of named choices of one kind (activation, edge op, initializer, …).

    Args:
        kind: what the names denote, used in error messages (``"activation"``).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def register(
        self, name: str, item: T, *, aliases: tuple[str, ...] = (), replace: bool = False
    ) -> T:
        """Add ``item`` under ``name`` (and its aliases); returns the item.

        Args:
            replace: put ``item`` in place of an item already registered under ``name`` (its
                old aliases are dropped). Without it a name registered twice is an error.

        Raises:
            SpecError: the name is empty or taken (and ``replace`` is off), or an alias is taken.
        """
        if not isinstance(name, str) or not normalize_name(name):
            raise SpecError(f"a {self.kind} needs a non-empty string name, got {name!r}")
        key = normalize_name(name)
        if key in self._aliases:
            raise SpecError(
                f"{self.kind} {name!r} is registered twice: it is an alias of "
                f"{self._aliases[key]!r}; choose another name"
            )
        if key in self._items:
            if not replace:
                raise SpecError(
                    f"{self.kind} {name!r} is registered twice; pass replace=True to put the "
                    "new one in its place"
                )
            self.unregister(key)
        taken = [
            a
            for a in aliases
            if normalize_name(a) in self._items
            or normalize_name(a) in self._aliases
            or normalize_name(a) == key
        ]
        if taken:  # an alias must never shadow another name or alias
            raise SpecError(f"{self.kind} {name!r}: alias(es) {taken} are already taken")
        self._items[key] = item
        for alias in aliases:
            self._aliases[normalize_name(alias)] = key
        return item

    def unregister(self, name: str) -> T:
        """Remove the item registered under ``name`` (and its aliases); returns it."""
        key = self.canonical(name)
        for alias in [a for a, k in self._aliases.items() if k == key]:
            del self._aliases[alias]
        return self._items.pop(key)

    def canonical(self, name: str, *, where: str = "") -> str:
        """The canonical spelling of ``name``; raises :class:`SpecError` listing the choices."""
        if isinstance(name, str) and name in self._items:  # canonical (asked every update)
            return name
        if not isinstance(name, str):
            raise SpecError(f"{where}{self.kind} must be a string, got {name!r}")
        key = normalize_name(name)
        key = self._aliases.get(key, key)
        if key in self._items:
            return key
        choices = sorted(self._items)
        close = difflib.get_close_matches(key, choices + sorted(self._aliases), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise SpecError(
            f"{where}unknown {self.kind} {name!r}.{hint} Valid choices: {', '.join(choices)}."
        )

    def get(self, name: str, *, where: str = "") -> T:
        """The item registered under ``name`` (or an alias); unknown names raise SpecError."""
        return self._items[self.canonical(name, where=where)]

    def aliases(self, name: str) -> tuple[str, ...]:
        """The aliases registered for the canonical ``name``, sorted."""
        key = self.canonical(name)
        return tuple(sorted(a for a, k in self._aliases.items() if k == key))

    def names(self) -> list[str]:
        """The canonical names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        if name in self._items:
            return True
        key = normalize_name(name)
        return key in self._items or key in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
