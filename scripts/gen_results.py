"""docs/results.md: tables generated from the results files, and the numbers the page quotes.

Two mechanisms keep the Results page from contradicting itself:

- **Generated blocks.** A table whose results file is in the repository (``docs/data/results/``)
  is written between ``<!-- generated: NAME ... -->`` and ``<!-- end generated -->`` by
  :func:`render_results`; ``scripts/gen_docs.py --check`` fails when a block is stale.
- **Quotes.** Each number the prose quotes (the verdict, the targets, the bullets under a table)
  is a :class:`Quote`: a phrase with its numbers filled in from the source it quotes. The page
  must contain the phrase as rendered; :func:`quote_errors` lists those it does not, so a quoted
  number that disagrees with its source fails ``tests/test_results_quotes.py`` and ``--check``.

A quote's source is a results file, or a generated table read back from the page (generated from
its file, so the chain file → table → quote is checked end to end).

``python scripts/gen_results.py runs/results`` keeps the runs' ``results.json`` files (under the
git-ignored ``runs/``) as ``docs/data/results/NAME.json`` (:func:`keep`).
"""

from __future__ import annotations

import datetime
import json
import re
import shutil
import statistics
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gen_results_studies  # scripts/gen_results_studies.py: the tables of §§6–7
import results_tables  # scripts/results_tables.py: the tables of §§1–4

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


def render_decoder_full(name: str = "decoder_full") -> str:
    """§4's table on the whole of FashionMNIST, from docs/data/results/NAME.json: the mean test
    MSE per (init, T_train) and T_eval, then the spread over the seeds and the seconds per run."""
    data = _load(name)
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


def _sizes(data: dict[str, Any]) -> tuple[int, int]:
    """Training and test images of a run: recorded by the classification examples; for the
    decoder's, from its configuration (``--full``: the whole of FashionMNIST)."""
    if "n_train" in data:
        return int(data["n_train"]), int(data["n_test"])
    config = data["config"]
    if config.get("full"):
        return config.get("train_size") or 60_000, config.get("test_size") or 10_000
    return int(config["train_size"]), int(config["test_size"])


def _provenance(data: dict[str, Any]) -> str:
    """The line under a table: data, machine, wall time, what ran beside it and the date (the
    commit it was kept at stays in the file, for the benchmark log, not on the user page)."""
    m = data.get("machine", {})
    kept = data.get("kept", {})
    beside = kept.get("beside")
    n_train, n_test = _sizes(data)
    return (
        f"\n\n{n_train:,} training / {n_test:,} test images, "
        f"{m.get('cpu', '?')} ({m.get('vector', '?')}), torch {m.get('torch', '?')}, "
        f"wall {data['wall_seconds'] / 60:.1f} min"
        + (f" with {beside} running beside it" if beside else ", nothing else running")
        + f", {kept.get('date', '?')}.\n"
    )


def render_classification() -> str:
    """§1's main table, from docs/data/results/classification.json."""
    data = _load("classification")
    return results_tables.classification_main(data) + _provenance(data)


def render_classification_targets() -> str:
    """§1's SMMs to each target, from the same file."""
    return results_tables.classification_targets(_load("classification"))


def render_init_best() -> str:
    """§2's best accuracy per (init, T), from docs/data/results/init_comparison.json."""
    data = _load("init_comparison")
    return results_tables.init_table(data, "best") + _provenance(data)


def render_init_final() -> str:
    """§2's final accuracy per (init, T), from the same file."""
    return results_tables.init_table(_load("init_comparison"), "final")


def render_init_large_t() -> str:
    """§2's large-T check, from docs/data/results/init_comparison_largeT.json."""
    data = _load("init_comparison_largeT")
    return results_tables.init_table(data, "best") + _provenance(data)


def render_cyclic() -> str:
    """§3's table, from docs/data/results/cyclic.json."""
    data = _load("cyclic")
    return results_tables.cyclic(data) + _provenance(data)


def render_cyclic_eval64() -> str:
    """§3's check of T_eval: the T = 4 runs evaluated at T_eval = 4 (cyclic.json) and, trained
    identically, at T_eval = 64 (cyclic_eval64.json)."""
    short, long = _load("cyclic"), _load("cyclic_eval64")
    lines = [
        "| init | final acc, T_eval 4 | T_eval 64 | best acc, T_eval 4 | T_eval 64 |",
        "|---|---|---|---|---|",
    ]
    groups4 = results_tables._groups(short["runs"])
    groups64 = results_tables._groups(long["runs"])
    for (init, t), runs64 in groups64.items():
        runs4 = groups4[(init, t)]
        cells = [
            results_tables._ms([pick(r["test_accuracy"]) for r in runs])
            for pick in (lambda acc: acc[-1], max)
            for runs in (runs4, runs64)
        ]
        lines.append(f"| {init} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + _provenance(long)


def render_decoder_main(name: str = "decoder") -> str:
    """§4's main job table (seeds → mean) and its PCA floors, from
    docs/data/results/NAME.json."""
    data = _load(name)
    floors = data["pca_floors"]
    n_train, n_test = _sizes(data)
    return (
        results_tables.decoder_table([data])
        + f"\n\nPCA fitted on the same {n_train:,} training images, on the same "
        f"{n_test:,} test images: 2 components {floors['2']:.4f}, 10 components "
        f"{floors['10']:.4f}, 50 components {floors['50']:.4f}." + _provenance(data)
    )


BLOCKS: dict[str, Callable[[], str]] = {
    "classification": render_classification,
    "classification-targets": render_classification_targets,
    "init-best": render_init_best,
    "init-final": render_init_final,
    "init-large-t": render_init_large_t,
    "cyclic": render_cyclic,
    "cyclic-eval64": render_cyclic_eval64,
    "decoder-main": render_decoder_main,
    "decoder-main-epc": lambda: render_decoder_main("decoder_epc"),
    "decoder-full": render_decoder_full,
    "decoder-full-epc": lambda: (
        render_decoder_full("decoder_full_epc") + _provenance(_load("decoder_full_epc"))
    ),
    "study-epc": render_study_epc,
    "study-precision": render_study_precision,
}

KEPT = (
    "classification",
    "init_comparison",
    "init_comparison_largeT",
    "cyclic",
    "cyclic_eval64",
    "decoder",
    "decoder_epc",
    "decoder_full_epc",
)  # decoder_full.json was kept by hand, with a note on its load
DROPPED = ("curves", "summary")  # derived from the runs, which the tables read instead


def keep(folder: Path, beside: dict[str, str] | None = None) -> list[Path]:
    """Copy each experiment's ``results.json`` under ``folder`` (the ``--out`` parent of the
    commands on the page) to ``docs/data/results/NAME.json``, without what is derived from its
    runs (learning curves, per-cell summaries), stamped with the date and the commit it was kept
    at and, from ``beside``, what ran beside it (a run not named there ran alone)."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    written = []
    for name in KEPT:
        source = folder / name / "results.json"
        if not source.is_file():
            continue
        data = json.loads(source.read_text(encoding="utf-8"))
        for key in DROPPED:
            data.pop(key, None)
        mtime = datetime.datetime.fromtimestamp(source.stat().st_mtime, datetime.UTC)
        data["kept"] = {"date": mtime.strftime("%Y-%m-%d"), "commit": commit or "?"}
        if beside and name in beside:
            data["kept"]["beside"] = beside[name]
        target = DATA / f"{name}.json"
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        shutil.move(tmp, target)
        written.append(target)
    return written


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
CYCLIC = "| init | T = T_eval | SMM / update"


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


def _init_verdict(page: str) -> dict[str, Any]:
    """The verdict's (1) and (2): §2's best accuracies, ranges over T ≤ 8 and the large-T check."""
    rows = {r["init"]: r for r in page_table(page, INIT_BEST)}
    large = {r["init"]: r for r in page_table(page, "| init | T=16 | T=32 |")}

    def acc(r: dict[str, str], t: int) -> float:
        return float(_mean(r[f"T={t}"]))

    def span(*inits: str) -> str:
        values = [acc(rows[i], t) for i in inits for t in (1, 2, 4, 8)]
        return f"{min(values):.3f}–{max(values):.3f}"

    return {
        "null": span("null"),
        "others": span("zero", "random"),
        **{f"{i}{t}": f"{acc(large[i], t):.3f}" for i in large for t in (16, 32)},
        **{f"{i}_{t}": f"{acc(rows[i], t):.3f}" for i in ("average", "forward") for t in (1, 2)},
    }


def _cyclic(page: str) -> dict[str, Any]:
    """§3: memory's final accuracy per T, and the best final accuracy of zero and random."""
    rows = page_table(page, CYCLIC)
    out: dict[str, Any] = {}
    for r in rows:
        if r["init"] == "memory":
            out[f"m{r['T = T_eval']}"] = _mean(r["final acc"])
    for init in ("zero", "random"):
        own = [r for r in rows if r["init"] == init]
        best = max(own, key=lambda r: float(_mean(r["final acc"])))
        out[init], out[f"{init}_t"] = _mean(best["final acc"]), best["T = T_eval"]
    return out


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


def _decoder_full_epc(_page: str) -> dict[str, Any]:
    data = _load("decoder_full_epc")
    cells = decoder_cells(data)
    evals, trains = data["config"]["T_eval"], data["config"]["T_train"]
    means = "; ".join(
        f"T_train {t}: " + " / ".join(f"{cells[('memory', t, e)].mean:.4f}" for e in evals)
        for t in trains
    )
    worst = max(v for t in trains for e in evals for v in cells[("memory", t, e)].per_seed)
    return {
        "means": means,
        "evals": " / ".join(map(str, evals)),
        "pca50": f"{data['pca_floors']['50']:.4f}",
        "worst": f"{worst:.4f}",
    }


def _decoder_main_epc(_page: str) -> dict[str, Any]:
    data = _load("decoder_epc")
    cells = decoder_cells(data)
    m2, m8 = cells[("memory", 2, 2)].mean, cells[("memory", 8, 2)].mean
    pca10 = data["pca_floors"]["10"]
    return {"m2": f"{m2:.4f}", "pca10": f"{pca10:.4f}", "ratio": f"{m2 / m8:.2f}"}


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
        "§2's tables",
        "best accuracy {null} vs {others}; at T=16: {null16} vs {zero16} / {random16}; at T=32 "
        "null ≈ zero, {null32} vs {zero32}, both above random {random32}",
        _init_verdict,
    ),
    Quote("§2's large-T table", "(forward {forward32} vs ≤ {null32})", _init_verdict),
    Quote(
        "§2's table",
        "{average_1} vs {forward_1} at T=1 and {average_2} vs {forward_2} at T=2 after 8 epochs",
        _init_verdict,
    ),
    Quote(
        "§3's table",
        "final accuracy {m1} / {m2} / {m4} / {m8} at T = 1 / 2 / 4 / 8, against at most {zero} for "
        "zero (T = {zero_t}) and {random} for random (T = {random_t})",
        _cyclic,
    ),
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
        "docs/data/results/decoder_full_epc.json",
        "Memory with ePC at T_eval = {evals}, 3-seed means: {means}; against PCA-50's "
        "{pca50}. The worst single seed in any of these cells: {worst}.",
        _decoder_full_epc,
    ),
    Quote(
        "docs/data/results/decoder_epc.json",
        "Memory with ePC reconstructs at {m2} at (T_train 2, T_eval 2), below PCA-10's {pca10} "
        "and below standard PC with memory init (above); T_train 2 is {ratio}× T_train 8",
        _decoder_main_epc,
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
        "With standard PC the best cell is {m8}, above PCA-50's {pca50}",
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


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="keep the runs' results files for docs/results.md")
    parser.add_argument("folder", type=Path, help="the --out parent of the page's commands")
    parser.add_argument(
        "--beside",
        action="append",
        default=[],
        metavar="NAME=WHAT",
        help="what ran beside run NAME (repeatable); the others ran alone",
    )
    cli = parser.parse_args()
    notes = dict(item.split("=", 1) for item in cli.beside)
    for path in keep(cli.folder, notes):
        print(f"kept {path.relative_to(REPO)}")
