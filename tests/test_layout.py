"""The package stays readable file by file: no source file in pcgraph/ over 400 lines (the
engine issue's bound; the C source included)."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pcgraph"
LIMIT = 400


def test_no_source_file_is_over_400_lines() -> None:
    sources = [*PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.c")]
    assert len(sources) > 50  # the package's own files were found
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in sources
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > LIMIT
    }
    assert not long, f"split these files (lines): {long}"
