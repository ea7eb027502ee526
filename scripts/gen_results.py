"""docs/results.md: tables generated from the results files, and the numbers the page quotes.

Two mechanisms keep the Results page from contradicting itself:

- **Generated blocks.** A table whose results file is in the repository (``docs/data/results/``)
  is written between ``<!-- generated: NAME ... -->`` and ``<!-- end generated -->`` by
  :func:`render_results`; ``scripts/gen_docs.py --check`` fails when a block is stale.
- **Quotes.** Each number the prose quotes (the verdict, the targets, the bullets under a table)
  is a :class:`Quote`: a phrase with its numbers filled in from the source it quotes. The page
  must contain the phrase as rendered; :func:`quote_errors` lists those it does not, so a quoted
  number that disagrees with its source fails ``tests/test_results_quotes.py`` and ``--check``.

Where a section's ``results.json`` is not in the repository (§§1–3 and the main decoder job:
their runs are under the git-ignored ``runs/``), the source of a quote is the table the page
prints (which ``scripts/results_tables.py`` printed from that file), read back from the page.
"""

from __future__ import annotations

import json
import re
import statistics
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PAGE = "results.md"
DATA = REPO / "docs" / "data" / "results"
END = "<!-- end generated -->"
BLOCK = re.compile(r"(<!-- generated: (\S+)[^>]*-->\n)(.*?)(" + re.escape(END) + ")", re.DOTALL)


# --- the results files ---------------------------------------------------------------------------
def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))
    return data


@dataclass(frozen=True)
class DecoderCell:
    """One (init, T_train, T_eval) cell of a decoder run: test MSE over the seeds."""

    mean: float
    std: float  # population std over the seeds, as the examples' summaries
    per_seed: tuple[float, ...]


def decoder_cells(data: dict[str, Any]) -> dict[tuple[str, int, int], DecoderCell]:
    """The decoder's rows by (init, T_train, T_eval), in the order the run wrote them."""
    values: dict[tuple[str, int, int], list[float]] = defaultdict(list)
    for row in sorted(data["results"], key=lambda r: r["seed"]):
        values[(row["init"], row["T_train"], row["T_eval"])].append(row["test_mse"])
    return {
        k: DecoderCell(statistics.fmean(v), statistics.pstdev(v), tuple(v))
        for k, v in values.items()
    }


def decoder_train_seconds(data: dict[str, Any]) -> dict[tuple[str, int], float]:
    """Mean training seconds of one run (init, T_train) over its seeds."""
    seconds: dict[tuple[str, int], list[float]] = defaultdict(list)
    for row in data["results"]:
        if row["T_eval"] == data["config"]["T_eval"][0]:  # one row per run carries its time
            seconds[(row["init"], row["T_train"])].append(row["train_seconds"])
    return {k: statistics.fmean(v) for k, v in seconds.items()}


def render_decoder_full() -> str:
    """§4's table on the whole of FashionMNIST, from docs/data/results/decoder_full.json."""
    data = _load("decoder_full")
    cells = decoder_cells(data)
    seconds = decoder_train_seconds(data)
    evals = data["config"]["T_eval"]
    best = {t: min(c.mean for (_, _, te), c in cells.items() if te == t) for t in evals}
    lines = [
        "| init | T_train | " + " | ".join(map(str, evals)) + " |",
        "|---|---|" + "---|" * len(evals),
    ]
    # the spread and the time in a table of their own: one table of 10 columns does not fit
    # the content column
    extra = [f"| init | T_train | ± std at T_eval {evals[0]} | s / run |", "|---|---|---|---|"]
    for init, t_train in dict.fromkeys((k[0], k[1]) for k in cells):
        row = []
        for t in evals:
            m = f"{cells[(init, t_train, t)].mean:.4f}"
            row.append(f"**{m}**" if cells[(init, t_train, t)].mean == best[t] else m)
        std = cells[(init, t_train, evals[0])].std
        lines.append(f"| {init} | {t_train} | " + " | ".join(row) + " |")
        extra.append(f"| {init} | {t_train} | {std:.4f} | {seconds[(init, t_train)]:.0f} |")
    floors = data["pca_floors"]
    pca = ", ".join(f"{k} components {v:.4f}" for k, v in floors.items())
    return (
        "\n".join(lines)
        + f"\n\nPCA fitted on the same training images: {pca}. The spread over the seeds and "
        "the training seconds per run:\n\n" + "\n".join(extra) + "\n"
    )


def _study_rows(name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    data = _load(name)
    return data["meta"], data["rows"]


def _curve(row: dict[str, Any]) -> str:
    return " / ".join(f"{a:.4f}" for a in row["accuracy"]) or "—"


def render_study_epc() -> str:
    """§8's ePC table, from docs/data/results/study_epc.json."""
    meta, rows = _study_rows("study_epc")
    lines = [
        "| algorithm | init | T | test accuracy by epoch | s to train (3 epochs) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['algorithm']} | {r['init']} | {r['T']} | {_curve(r)} | {r['seconds'][-1]:.1f} |"
        )
    return "\n".join(lines) + (
        f"\n\n{meta['train']:,} training / {meta['test']:,} test images, γ = "
        f"{meta['lr_neurons']}, {meta['threads']} threads, torch {meta['torch']}, {meta['date']}.\n"
    )


def render_study_precision() -> str:
    """§8's learned-precision table, from docs/data/results/study_precision.json."""
    meta, rows = _study_rows("study_precision")
    lines = [
        "| init, T | hidden precision | test accuracy by epoch | s to train | learned w (h1 … h4) "
        "| N / ‖ε‖² at the end (h1 … h4) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        how = (
            "fixed at 1"
            if not r.get("learned")
            else "learned, lr " + str(r.get("precision_lr", "1e-3 (the weights' AdamW)"))
        )
        learned = r.get("learned_w")
        w = " / ".join(f"{v:.3g}" for v in learned.values()) if learned else "—"
        opt = r.get("optimum_w")
        o = " / ".join(f"{v:.2g}" for v in opt.values()) if isinstance(opt, dict) else "—"
        lines.append(
            f"| {r['init']}, {r['T']} | {how} | {_curve(r)} | {r['seconds'][-1]:.1f} | {w} | {o} |"
        )
    return "\n".join(lines) + (
        f"\n\n{meta['train']:,} training / {meta['test']:,} test images, γ = "
        f"{meta['lr_neurons']}, {meta['threads']} threads, torch {meta['torch']}, {meta['date']}.\n"
    )


BLOCKS: dict[str, Callable[[], str]] = {
    "decoder-full": render_decoder_full,
    "study-epc": render_study_epc,
    "study-precision": render_study_precision,
}


def render_results(page_text: str) -> str:
    """``page_text`` with every generated block rewritten from its results file."""

    def block(match: re.Match[str]) -> str:
        name = match.group(2)
        if name not in BLOCKS:
            raise ValueError(
                f"docs/{PAGE}: no generator for block {name!r} (known: {list(BLOCKS)})"
            )
        return match.group(1) + "\n" + BLOCKS[name]() + "\n" + match.group(4)

    return BLOCK.sub(block, page_text)


# --- the page's own tables, for the sections whose results.json is not kept ---------------------
def page_table(page_text: str, header: str) -> list[dict[str, str]]:
    """The Markdown table whose header line starts with ``header``, as rows of cells by column
    name (bold markers removed)."""
    lines = page_text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(header)), None)
    if start is None:
        raise ValueError(f"docs/{PAGE} has no table starting {header!r}")
    names = [c.strip() for c in lines[start].strip().strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip().replace("**", "") for c in line.strip().strip("|").split("|")]
        rows.append(dict(zip(names, cells, strict=True)))
    return rows


def _row(rows: list[dict[str, str]], **match: str) -> dict[str, str]:
    found = [r for r in rows if all(r[k] == v for k, v in match.items())]
    if len(found) != 1:
        raise ValueError(f"{len(found)} rows match {match}")
    return found[0]


def _mean(cell: str) -> str:
    """'0.828 ± 0.014' → '0.828'; '0.0240 / 0.0244 / 0.0243 → 0.0242' → '0.0242'."""
    return cell.split("→")[-1].split("±")[0].strip()


def _seeds(cell: str) -> list[float]:
    """'0.0240 / 0.0244 / 0.0243 → 0.0242' → the per-seed values."""
    return [float(v) for v in cell.split("→")[0].split("/")]


# --- quotes --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Quote:
    """A phrase of the page whose ``{fields}`` are numbers taken from ``source``."""

    source: str  # where the numbers come from, for the error message
    phrase: str
    values: Callable[[str], dict[str, Any]]  # the page's text → the phrase's fields

    def render(self, page_text: str) -> str:
        return self.phrase.format(**self.values(page_text))


CLASSIFICATION = "| method | T | SMM / update"
TARGETS = "| target | BP | forward"
INIT_BEST = "| init | T=1 | T=2 | T=4 | T=8 |"  # the first of §2's two tables: best accuracy
MAIN_JOB = "| init | T_train | T_eval=2 | T_eval=8"


def _classification(page: str) -> dict[str, Any]:
    rows = page_table(page, CLASSIFICATION)
    hybrid, forward2 = _row(rows, method="hybrid", T="2"), _row(rows, method="forward", T="2")
    bp = _row(rows, method="bp")
    return {
        "hybrid_s": hybrid["train s to 0.80"],
        "forward_s": _row(rows, method="forward", T="4")["train s to 0.80"],
        "bp_s": bp["train s to 0.80"],
        "hybrid_final": _mean(hybrid["final acc"]),
        "forward2_final": _mean(forward2["final acc"]),
        "hybrid_best": _mean(hybrid["best acc"]),
        "bp_best": _mean(bp["best acc"]),
        "bp_final": _mean(bp["final acc"]),
    }


def _targets(page: str) -> dict[str, Any]:
    rows = page_table(page, TARGETS)
    at80, at84 = _row(rows, target="0.80"), _row(rows, target="0.84")
    hybrid, forward, bp = (
        float(at80[k].split()[0]) for k in ("hybrid T=2", "forward (best T)", "BP")
    )
    return {
        "hybrid": f"{hybrid:.0f}",
        "forward": f"{forward:.0f}",
        "bp": f"{bp:.0f}",
        "vs_forward": f"{forward / hybrid:.1f}",
        "vs_bp": f"{bp / hybrid:.1f}",
        "hybrid84": at84["hybrid T=2"],
        "forward84": at84["forward (best T)"].split()[0],
        "bp84": at84["BP"].split()[0],
    }


def _init_best(page: str) -> dict[str, Any]:
    rows = page_table(page, INIT_BEST)
    hybrid, forward = _row(rows, init="hybrid"), _row(rows, init="forward")
    return {
        f"{name}{t}": _mean(r[f"T={t}"])
        for name, r in (("h", hybrid), ("f", forward))
        for t in (1, 2)
    }


def _main_job(page: str) -> dict[str, Any]:
    rows = page_table(page, MAIN_JOB)
    t2 = _row(rows, init="memory", T_train="2")["T_eval=2"]
    t8 = _row(rows, init="memory", T_train="8")["T_eval=2"]
    ratios = [a / b for a, b in zip(_seeds(t2), _seeds(t8), strict=True)]
    return {
        "t2": _mean(t2),
        "t8": _mean(t8),
        "ratio": f"{float(_mean(t2)) / float(_mean(t8)):.2f}",
        "per_seed": ", ".join(f"{r:.2f}×" for r in ratios),
    }


def _closest_seed(page: str) -> dict[str, Any]:
    """The smallest margin, over the main job's seeds and cells, of memory below the best other
    init."""
    rows = page_table(page, MAIN_JOB)
    margins = []
    for memory in (r for r in rows if r["init"] == "memory"):
        others = [r for r in rows if r["T_train"] == memory["T_train"] and r["init"] != "memory"]
        for col in (c for c in memory if c.startswith("T_eval=")):
            for seed, mse in enumerate(_seeds(memory[col])):
                other = min(others, key=lambda r: _seeds(r[col])[seed])
                value = _seeds(other[col])[seed]
                margins.append(
                    (value - mse, seed, memory["T_train"], col, mse, other["init"], value)
                )
    _, seed, t_train, col, mse, other, value = min(margins)
    return {
        "seed": seed,
        "t_train": t_train,
        "t_eval": col.removeprefix("T_eval="),
        "mse": f"{mse:.4f}",
        "other": other,
        "value": f"{value:.4f}",
    }


def _decoder_full(_page: str) -> dict[str, Any]:
    data = _load("decoder_full")
    cells = decoder_cells(data)
    floors = data["pca_floors"]
    mem = {t: cells[("memory", t, 2)].mean for t in (2, 4, 8)}
    baselines = {k: c.mean for k, c in cells.items() if k[0] != "memory"}
    best_baseline = min(baselines, key=lambda k: baselines[k])
    best_of_each = {
        k: min((i for i in cells if i[1:] == k), key=lambda i: cells[i].mean)
        for k in {(k[1], k[2]) for k in cells}
    }
    return {
        "memory_best_cells": sum(1 for k in best_of_each.values() if k[0] == "memory"),
        "cells": len(best_of_each),
        "m2": f"{mem[2]:.4f}",
        "m4": f"{mem[4]:.4f}",
        "m8": f"{mem[8]:.4f}",
        "pca10": f"{floors['10']:.4f}",
        "pca50": f"{floors['50']:.4f}",
        "ratio": f"{mem[2] / mem[8]:.2f}",
        "baseline": best_baseline[0],
        "baseline_at": f"({best_baseline[1]}, {best_baseline[2]})",
        "baseline_mse": f"{baselines[best_baseline]:.4f}",
        "zero4": f"{cells[('zero', 4, 2)].mean:.2f}",
        "zero8": f"{cells[('zero', 8, 2)].mean:.2f}",
    }


QUOTES: tuple[Quote, ...] = (
    Quote(
        "§1's table",
        "hybrid T=2 reached 0.80 after {hybrid_s} s of training, forward T=4 after {forward_s} s, "
        "BP after {bp_s} s",
        _classification,
    ),
    Quote(
        "§1's table", "{hybrid_final} vs {forward2_final} at T=2 after 16 epochs", _classification
    ),
    Quote("§1's table", "({hybrid_best} vs {bp_best} best / {bp_final} final)", _classification),
    Quote(
        "§1's targets table",
        "SMMs to 0.80 test accuracy: hybrid T=2 {hybrid}, forward (best T=4) {forward}, BP {bp} — "
        "{vs_forward}× fewer than forward and {vs_bp}× fewer than BP; to 0.84: {hybrid84} vs "
        "{forward84} (forward, 2 of 3 seeds) and {bp84} (BP, 1 of 3 seeds)",
        _targets,
    ),
    Quote("§2's table", "{h1} vs {f1} at T=1, {h2} vs {f2} at T=2 (8 epochs)", _init_best),
    Quote(
        "§4's main job table",
        "main job {t2} vs {t8} ({ratio}×; per seed {per_seed})",
        _main_job,
    ),
    Quote("§4's main job table", "{ratio}× in the main job, {t2} vs {t8}", _main_job),
    Quote(
        "§4's main job table",
        "(closest: seed {seed}, T_train = {t_train}, T_eval = {t_eval}, memory {mse} vs {other} "
        "{value})",
        _closest_seed,
    ),
    Quote(
        "docs/data/results/decoder_full.json",
        "Memory is the best init in **{memory_best_cells} of {cells}** cells on the means. It "
        "reconstructs below PCA-10 from T_train = 4 on ({m4}, {m8}), and just above it at "
        "T_train = 2 ({m2} vs {pca10}).",
        _decoder_full,
    ),
    Quote(
        "docs/data/results/decoder_full.json",
        "Not met: memory ≤ PCA-50 ({pca50}) at T_eval ≤ 8; the best cell is {m8}",
        _decoder_full,
    ),
    Quote(
        "docs/data/results/decoder_full.json",
        "At full scale T_train = 2 is {ratio}× T_train = 8",
        _decoder_full,
    ),
    Quote(
        "docs/data/results/decoder_full.json",
        "the best of them, {baseline} at {baseline_at}, is {baseline_mse}; zero diverges at small "
        "T_eval after T_train = 4 and 8 ({zero4} and {zero8} at T_eval = 2)",
        _decoder_full,
    ),
)

# §§6–7 (the solver study, generation from a label): their blocks and quotes
import sys  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gen_results_studies  # noqa: E402

BLOCKS.update(gen_results_studies.BLOCKS)
QUOTES += tuple(Quote(q.source, q.phrase, q.values) for q in gen_results_studies.QUOTES)


def _flat(text: str) -> str:
    return " ".join(text.split())


def quote_errors(page_text: str) -> list[str]:
    """One message per quote the page does not contain as its source gives it."""
    flat = _flat(page_text)
    errors = []
    for quote in QUOTES:
        expected = _flat(quote.render(page_text))
        if expected not in flat:
            errors.append(f"docs/{PAGE} should say {expected!r} (from {quote.source})")
    return errors
