"""Shared fixtures: seeded generators and paths of the shipped topologies."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hypothesis import settings

REPO_ROOT = Path(__file__).resolve().parent.parent
TOPOLOGY_DIR = REPO_ROOT / "topologies"
TOPOLOGY_NAMES = sorted(p.stem for p in TOPOLOGY_DIR.glob("*.yaml"))

# No example database: property tests must not write into the working tree.
settings.register_profile("pcgraph", deadline=None, database=None)
settings.load_profile("pcgraph")


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> None:
    """Tests use small tensors: one torch thread avoids thread-pool contention on the shared
    2-core CI machine (tiny ops otherwise slow down 20-100x when another process is busy)."""
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    """Same seed before every test, so any randomness in a test is reproducible."""
    random.seed(0)
    torch.manual_seed(0)


@pytest.fixture
def topology() -> Callable[[str], Path]:
    """``topology("loop")`` → absolute path of ``topologies/loop.yaml`` (which must exist)."""

    def path(name: str) -> Path:
        file = TOPOLOGY_DIR / (name if name.endswith(".yaml") else f"{name}.yaml")
        assert file.is_file(), f"no topology {file}"
        return file

    return path


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test asking for ``topology_name`` runs once per file in ``topologies/``."""
    if "topology_name" in metafunc.fixturenames:
        metafunc.parametrize("topology_name", TOPOLOGY_NAMES)
