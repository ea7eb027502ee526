"""docs/results.md cannot contradict itself: its generated tables are computed from the results
files as the page defines them (means and population stds over seeds, the best mean of a column
in bold), and every number its prose quotes equals the table or file it comes from."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "results.md"


@pytest.fixture(scope="module")
def gen_results() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_results", ROOT / "scripts" / "gen_results.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_results"] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def test_every_quoted_number_agrees_with_its_source(gen_results: ModuleType) -> None:
    assert gen_results.quote_errors(PAGE.read_text(encoding="utf-8")) == []


def test_generated_blocks_are_fresh(gen_results: ModuleType) -> None:
    text = PAGE.read_text(encoding="utf-8")
    assert gen_results.BLOCK.search(text), "docs/results.md has no generated block"
    assert gen_results.render_results(text) == text, "run `python scripts/gen_docs.py`"


@pytest.mark.parametrize(
    ("quoted", "changed"),
    [
        ("4.0 s of training", "2.1 s of training"),  # §1's table says 4.0
        ("1.04× in the main job, 0.0226", "1.01× in the main job, 0.0226"),  # 0.0226 / 0.0218
        ("0.84: 1190 vs", "0.84: 1191 vs"),  # the targets table says 1190
    ],
)
def test_a_quote_that_disagrees_with_its_source_fails(
    gen_results: ModuleType, quoted: str, changed: str
) -> None:
    text = PAGE.read_text(encoding="utf-8")
    assert text.count(quoted) == 1
    errors = gen_results.quote_errors(text.replace(quoted, changed))
    assert len(errors) == 1 and "should say" in errors[0]


def test_decoder_table_follows_the_pages_definitions(
    gen_results: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [
        # memory: seeds 0.02 and 0.04 at every T_eval → mean 0.03, population std 0.01
        {"init": "memory", "T_train": 2, "seed": s, "T_eval": t, "test_mse": mse,
         "train_seconds": sec}
        for s, mse, sec in ((0, 0.02, 10.0), (1, 0.04, 20.0))
        for t in (2, 8)
    ] + [
        # zero: worse at T_eval = 2 (0.09), better at 8 (0.01 and 0.02 → 0.015)
        {"init": "zero", "T_train": 2, "seed": s, "T_eval": t, "test_mse": mse,
         "train_seconds": 5.0}
        for s in (0, 1)
        for t, mse in ((2, 0.09), (8, 0.01 + 0.01 * s))
    ]  # fmt: skip
    data = {"config": {"T_eval": [2, 8]}, "pca_floors": {"10": 0.025}, "results": rows}
    (tmp_path / "decoder_full.json").write_text(json.dumps(data))
    monkeypatch.setattr(gen_results, "DATA", tmp_path)
    table = gen_results.render_decoder_full()
    cells: dict[str, list[str]] = {}
    for line in table.splitlines():  # the MSE table, then the spread and seconds table
        if line.startswith("| memory") or line.startswith("| zero"):
            cells.setdefault(line.split("|")[1].strip(), []).extend(
                c.strip() for c in line.split("|")[3:-1]
            )
    # mean 0.03 at 2 (the best: bold), 0.03 at 8 (zero's 0.015 is best), std 0.01, 15 s a run
    assert cells["memory"] == ["**0.0300**", "0.0300", "0.0100", "15"]
    assert cells["zero"] == ["0.0900", "**0.0150**", "0.0000", "5"]
    assert "10 components 0.0250" in table
