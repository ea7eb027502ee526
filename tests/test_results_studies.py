"""docs/results.md §§6–7: the solver study's tables follow the page's definitions (a diverged seed
counts neither in the best accuracy nor as reaching the target; SMMs and seconds at the first
epoch reaching it, averaged over the seeds that did), and a quoted number of §§6–7 that
disagrees with its results file fails."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "results.md"


def _module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def study() -> ModuleType:
    return _module("study_solvers")


@pytest.fixture(scope="module")
def gen_results() -> ModuleType:
    return _module("gen_results")


def _grid_row(seed: int, accuracy: list[float], outcome: str = "trained") -> dict:  # type: ignore[type-arg]
    return {
        "init": "forward",
        "schedule": "standard",
        "solver": "sgd",
        "T": 2,
        "seed": seed,
        "accuracy": accuracy,
        "smm_total": [100 * (e + 1) for e in range(len(accuracy))],  # 100 SMMs an epoch
        "wall_s": [2.0 * (e + 1) for e in range(len(accuracy))],
        "outcome": outcome,
    }


def test_grid_cells_follow_the_pages_definitions(study: ModuleType) -> None:
    rows = [
        _grid_row(0, [0.70, 0.76, 0.80]),  # reaches 0.75 at epoch 2: 200 SMMs, 4 s
        _grid_row(1, [0.78, 0.79, 0.74]),  # at epoch 1: 100 SMMs, 2 s; best 0.79
        _grid_row(2, [0.90], outcome="diverged"),  # reached 0.75, then diverged: counts neither
    ]
    cell = study.grid_cells(rows, 0.75)[("forward", "standard", "sgd", 2)]
    assert cell.best == pytest.approx((0.80 + 0.79) / 2)
    assert (cell.smm, cell.seconds) == (pytest.approx(150), pytest.approx(3.0))
    assert (cell.reached, cell.diverged, cell.seeds) == (2, 1, 3)
    line = study.grid_table(rows, 0.75).splitlines()[2]
    assert line == "| forward | standard | sgd | 2 | 0.795 (1 diverged) | 150 | 3.0 | 2/3 |"


def test_decoder_and_depth_cells_average_the_runs_that_trained(study: ModuleType) -> None:
    decoder = [
        {"init": "zero", "schedule": "standard", "solver": "sgd", "T": 2, "seed": s,
         "mse": mse, "smm_total": [10, 20] if mse else [], "wall_s": [1.0, 3.0] if mse else []}
        for s, mse in ((0, [0.09, 0.05]), (1, [0.08, 0.07]), (2, []))
    ]  # fmt: skip
    cell = study.decoder_cells(decoder)[("zero", "standard", "sgd", 2)]
    assert (cell.mse, cell.smm, cell.seconds) == (pytest.approx(0.06), 20, 3.0)
    assert (cell.diverged, cell.seeds) == (1, 3)
    depth = [
        {"depth": 8, "parameterization": "sp", "seed": s, "accuracy": a}
        for s, a in ((0, 0.2), (1, None), (2, 0.4))
    ]
    d = study.depth_cells(depth)[(8, "sp")]
    assert (d.accuracy, d.trained, d.diverged) == (pytest.approx(0.3), 2, 1)


@pytest.mark.parametrize(
    ("quoted", "changed"),
    [
        ("0.0345 at T = 2 and 0.0282", "0.0347 at T = 2 and 0.0282"),  # §6's decoder table
        ("445–500 SMMs to 0.75", "445–510 SMMs to 0.75"),  # §6's grid
        ("**0.811 ± 0.012**", "**0.812 ± 0.012**"),  # §7's judge, over its 3 seeds
    ],
)
def test_a_quote_of_sections_6_7_that_disagrees_fails(
    gen_results: ModuleType, quoted: str, changed: str
) -> None:
    text = PAGE.read_text(encoding="utf-8")
    assert text.count(quoted) == 1
    errors = gen_results.quote_errors(text.replace(quoted, changed))
    assert len(errors) == 1 and "docs/data/results/" in errors[0]
