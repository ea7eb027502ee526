"""The benchmark scripts run and report what they promise (smoke tests; not timings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_bench_init_quick_json() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_init.py"), "--quick", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    data = json.loads(out.stdout)
    assert {"rows", "hybrid_vs_forward_smm", "hybrid_vs_forward_seconds", "records"} <= set(data)
    T = data["T"]
    # steady-state SMMs per update on mlp5 (train clamp): 2T + forward sweep of h1…h4 (4),
    # + hybrid's sweep of h1, h2 (K = 2), + nothing for the class means
    assert data["rows"]["forward"]["smm_per_update"] == 2 * T + 4
    assert data["rows"]["hybrid"]["smm_per_update"] == 2 * T + 2
    assert data["rows"]["average"]["smm_per_update"] == 2 * T
    for record in data["records"]:
        assert all(0.0 <= a <= 1.0 for a in record["test_accuracy"])
        assert record["smm_total"] == sorted(record["smm_total"])
