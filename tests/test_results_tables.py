"""scripts/results_tables.py: the page's tables computed from results.json as the page defines
them (means and population stds over seeds; SMMs to a target at the first epoch reaching it,
averaged over the seeds that reached it; the best mean of a column in bold)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location(
    "results_tables", ROOT / "scripts" / "results_tables.py"
)
assert _spec is not None and _spec.loader is not None
tables = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tables)


def _run(method: str, T: int | None, seed: int, acc: list[float], smm_per_update: int) -> dict:  # type: ignore[type-arg]
    return {
        "method": method,
        "T": T,
        "seed": seed,
        "test_accuracy": acc,
        "smm_total": [10 * smm_per_update * (e + 1) for e in range(len(acc))],  # 10 updates/epoch
        "train_seconds": [1.0 * (e + 1) for e in range(len(acc))],
        "smm_per_update": smm_per_update,
    }


def test_classification_rows_follow_the_pages_definitions(tmp_path: Path) -> None:
    runs = [
        _run("bp", None, 0, [0.70, 0.81, 0.83], 9),
        _run("bp", None, 1, [0.75, 0.79, 0.80], 9),  # reaches 0.80 one epoch later
        _run("hybrid", 2, 0, [0.82, 0.84, 0.85], 6),
        _run("hybrid", 2, 1, [0.78, 0.86, 0.86], 6),
    ]
    folder = tmp_path / "classification"
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps({"runs": runs, "target": 0.80}))
    text = tables.classification(json.loads((folder / "results.json").read_text()))
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    bp = [c.strip() for c in rows["bp"].split("|")[1:-1]]
    # final 0.83, 0.80 → 0.815 ± 0.015 (population std); best 0.83, 0.80 → the same
    assert bp[3] == "0.815 ± 0.015" and bp[4] == "0.815 ± 0.015"
    # 2/2 seeds reach 0.80, at epochs 2 and 3: SMMs 180 and 270 → 225; seconds 2 and 3 → 2.5
    assert bp[5] == "2/2" and bp[6] == "225" and bp[7] == "2.5" and bp[8] == "3.0"
    hybrid = [c.strip() for c in rows["hybrid"].split("|")[1:-1]]
    assert hybrid[3] == "**0.855 ± 0.005**"  # the best final mean is bold
    assert hybrid[6] == "90"  # epoch 1 (60 SMMs) and epoch 2 (120) → 90
    # the targets table: 0.84 is reached by no bp seed, by both hybrid seeds (120 and 120)
    target = next(line for line in text.splitlines() if line.startswith("| 0.84"))
    assert target.split("|")[2].strip() == "never" and target.split("|")[5].strip() == "120"
