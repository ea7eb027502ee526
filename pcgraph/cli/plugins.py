"""``--plugin MODULE``: import a user's module that registers parts before a command runs.

A plugin is a Python module of the user's own that calls ``pcgraph.register_op``,
``register_energy``, ``register_solver`` (or registers an initializer or an activation) when it
is imported. ``MODULE`` is an import path (``mylab.pc_parts``, found on ``sys.path`` or in the
current folder) or the path of a ``.py`` file. The option is accepted before or after the
command and may be repeated; the plugins are imported in order, before the arguments are
parsed and before any topology is read. It is the only way a command imports code of the
user's: nothing is ever imported because of a YAML file.

A plugin that cannot be imported, or that registers nothing, is one error naming it.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from pcgraph.errors import ConfigError

__all__ = ["FLAG", "HELP", "load_plugins", "split_plugins"]

FLAG = "--plugin"
HELP = (
    "import MODULE first: an import path (mylab.pc_parts) or a .py file that registers ops, "
    "energies, solvers, initializers or activations (repeatable; before or after the command)"
)

Snapshot = dict[tuple[int, str], tuple[int, tuple[str, ...]]]


def split_plugins(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """The ``--plugin`` values (``--plugin M`` or ``--plugin=M``, anywhere) and the rest of
    ``argv``, in order."""
    plugins: list[str] = []
    rest: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg == FLAG:
            value = next(args, None)
            if value is None or value.startswith("-"):
                raise ConfigError(f"{FLAG} needs a module: an import path or a .py file")
            plugins.append(value)
        elif arg.startswith(FLAG + "="):
            plugins.append(arg[len(FLAG) + 1 :])
        else:
            rest.append(arg)
    return plugins, rest


def load_plugins(plugins: Sequence[str]) -> list[ModuleType]:
    """Import each plugin once, in order; each must register at least one part.

    Raises:
        ConfigError: a plugin cannot be found or imported (the import error in one line), or
            its import changed no registry.
    """
    modules: list[ModuleType] = []
    initial = set(sys.modules)
    for spec in dict.fromkeys(plugins):  # the same plugin named twice is imported once
        before = _snapshot()
        module, fresh = _import(spec)
        if not fresh and (module.__name__ not in initial or module.__name__ in _LOADED):
            # an earlier plugin of this command, or of an earlier command in this process,
            # imported it, and it registered then
            modules.append(module)
            continue
        if not fresh or _snapshot() == before:
            already = "" if fresh else ", it was imported before the plugins"
            raise ConfigError(
                f"{FLAG} {spec}: the module registers nothing (no op, energy, solver, "
                f"initializer or activation was added{already}); a plugin calls "
                "pcgraph.register_op, register_energy or register_solver when it is imported"
            )
        modules.append(module)
        _LOADED.add(module.__name__)
    return modules


_LOADED: set[str] = set()  # modules loaded as plugins in this process (each registered then)


def _registries() -> list[Any]:
    """Every registry a plugin may add to (imported here: they need torch)."""
    from pcgraph.activations import ACTIVATIONS
    from pcgraph.energies import ENERGIES
    from pcgraph.init import INITIALIZERS
    from pcgraph.names import ACTIVATION_NAMES
    from pcgraph.ops import OPS
    from pcgraph.solvers import SOLVERS

    return [OPS, ENERGIES, SOLVERS, INITIALIZERS, ACTIVATIONS, ACTIVATION_NAMES]


def _snapshot() -> Snapshot:
    """Each (registry, name) with the identity of its item and its aliases: a name added, an
    item replaced or an alias added all change it."""
    return {
        (i, name): (id(registry.get(name)), registry.aliases(name))
        for i, registry in enumerate(_registries())
        for name in registry.names()
    }


def _import(spec: str) -> tuple[ModuleType, bool]:
    """The plugin's module, and whether this call imported it (False: it was already)."""
    is_file = spec.endswith(".py") or "/" in spec or os.sep in spec
    try:
        if is_file:
            return _import_file(Path(spec))
        if spec in sys.modules:
            return sys.modules[spec], False
        with _current_folder_on_path():
            return importlib.import_module(spec), True
    except ConfigError:
        raise
    except ModuleNotFoundError as exc:
        if exc.name is not None and (spec + ".").startswith(exc.name + "."):  # the plugin
            raise ConfigError(
                f"{FLAG} {spec}: no module named {exc.name!r} on the Python path or in the "
                "current folder; pass an import path (mylab.pc_parts) or a .py file"
            ) from exc
        raise ConfigError(f"{FLAG} {spec}: cannot be imported: {_one_line(exc)}") from exc
    except Exception as exc:  # the plugin's own error, whatever it is: one line, named
        raise ConfigError(f"{FLAG} {spec}: cannot be imported: {_one_line(exc)}") from exc


def _import_file(path: Path) -> tuple[ModuleType, bool]:
    if not path.is_file():
        raise ConfigError(f"{FLAG} {path}: no such file")
    if path.suffix != ".py":
        raise ConfigError(f"{FLAG} {path}: not a .py file")
    resolved = path.resolve()
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if file and Path(file).resolve() == resolved:
            return module, False
    # under its own name where that is free (so that its objects pickle), else a private one
    name = path.stem if path.stem.isidentifier() and path.stem not in sys.modules else None
    name = name or f"_pcgraph_plugin_{abs(hash(str(resolved)))}"
    loader_spec = importlib.util.spec_from_file_location(name, resolved)
    if loader_spec is None or loader_spec.loader is None:
        raise ConfigError(f"{FLAG} {path}: cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module
    try:
        loader_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module, True


class _current_folder_on_path:
    """The current folder at the end of ``sys.path`` while a plugin is imported: ``python -m
    pcgraph`` has it, the ``pcgraph`` script does not, and an import path should mean the same
    under both (last, so that it never shadows an installed module)."""

    def __enter__(self) -> None:
        self.folder = os.getcwd()
        self.added = self.folder not in sys.path and "" not in sys.path
        if self.added:
            sys.path.append(self.folder)

    def __exit__(self, *exc: object) -> None:
        if self.added and self.folder in sys.path:
            sys.path.remove(self.folder)


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"
