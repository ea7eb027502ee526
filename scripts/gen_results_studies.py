"""docs/results.md §§6–7: the solver study's and the label generator's tables, and their quotes.

The tables are generated from results files kept in ``docs/data/results/``:

- ``study_solvers_grid.json``, ``study_solvers_decoder.json``, ``study_solvers_depth.json``: the
  records of ``scripts/study_solvers.py grid|decoder|depth`` (its ``--log``), tabulated by that
  script's own ``grid_table``, ``decoder_table`` and ``depth_table``;
- ``label_to_image.json``: ``results.json`` of ``examples/label_to_image.py``.

Each file carries a ``kept`` record (date, commit, what ran beside it) and the machine. This
module's ``BLOCKS`` and ``QUOTES`` are registered in ``scripts/gen_results.py``, which renders
and checks them with the rest of the page. To keep a new run::

    python scripts/gen_results_studies.py --study runs/study \\
        --label runs/results/label_to_image --note "nothing else running"
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import study_solvers  # scripts/study_solvers.py: the study's runs and its tables
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "docs" / "data" / "results"
PARTS = ("grid", "decoder", "depth")
GRID_TARGET = 0.75  # the test accuracy the grid's cost is measured to


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))
    return data


def _machine(data: dict[str, Any]) -> str:
    m, kept = data["machine"], data["kept"]
    threads = "one torch thread" if m["threads"] == 1 else f"{m['threads']} torch threads"
    return (
        f"{m['cpu']}, {m['cores']} cores ({m['vector'].upper()}), {threads}, torch {m['torch']} "
        f"on the CPU, {kept['date']}; {kept['note']}"
    )


# --- §6: the solver study ------------------------------------------------------------------------
def render_solvers_grid() -> str:
    """§6's grid: best accuracy and the cost to the target per (init, schedule, solver, T)."""
    data = _load("study_solvers_grid")
    return (
        study_solvers.grid_table(data["rows"], data["target"])
        + f"\nSeconds measured on {_machine(data)}.\n"
    )


def render_solvers_decoder() -> str:
    """§6's decoder: test MSE, SMMs and seconds per (init, schedule, solver, T)."""
    data = _load("study_solvers_decoder")
    return study_solvers.decoder_table(data["rows"]) + f"\nSeconds measured on {_machine(data)}.\n"


def render_solvers_depth() -> str:
    """§6's depth: runs trained or diverged and the mean accuracy per depth and parameterization."""
    data = _load("study_solvers_depth")
    return study_solvers.depth_table(data["rows"]) + f"\nMeasured on {_machine(data)}.\n"


# --- §7: generation from a label -----------------------------------------------------------------
def _tau_name(tau: str, default: str) -> str:
    if tau == "0":
        return "prototype (τ 0)"
    if tau == "unit":
        return "unit precision"
    return f"τ {tau} (default)" if tau == default else f"τ {tau}"


def render_label_to_image() -> str:
    """§7's recognition rates: overall (± std over seeds), then per class, for each sampler."""
    data = _load("label_to_image")
    summary, default = data["summary"], data["config"]["taus"][0]
    columns = [(_tau_name(t, default), s) for t, s in summary["recognition"].items()]
    if "discriminative" in summary:
        columns.append(("y → x query", summary["discriminative"]))
    lines = [
        "| class | " + " | ".join(name for name, _ in columns) + " |",
        "|---|" + "---|" * len(columns),
        "| overall (± std over seeds) | "
        + " | ".join(f"{s['overall_mean']:.3f} ± {s['overall_std']:.3f}" for _, s in columns)
        + " |",
    ]
    for k, name in enumerate(data["class_names"]):
        cells = " | ".join(f"{s['per_class_mean'][k]:.2f}" for _, s in columns)
        lines.append(f"| {name} | {cells} |")
    return "\n".join(lines) + "\n"


def _signed(value: float) -> str:
    return f"{value:+.3f}".replace("-", "−")


def render_label_to_image_seeds() -> str:
    """§7's per-seed figures: the judge, the residual scales, the times, the y → x query."""
    data = _load("label_to_image")
    hidden = list(data["runs"][0]["residual_scales"])
    lines = [
        "| seed | judge's test accuracy | "
        + " | ".join(f"s_{h}" for h in hidden)
        + " | generator's training s | x → y test accuracy | y → x classes recognised "
        "| y → x pixel range |",
        "|---|---|" + "---|" * len(hidden) + "---|---|---|---|",
    ]
    for run in data["runs"]:
        scales = " | ".join(f"{run['residual_scales'][h]:.3f}" for h in hidden)
        d = run["discriminative"]
        hits = round(d["recognition"]["overall"] * len(data["class_names"]))
        low, high = d["pixel_range"]
        lines.append(
            f"| {run['seed']} | {run['classifier_test_accuracy']:.3f} | {scales} | "
            f"{run['seconds']['generator']:.1f} | {d['pc_test_accuracy']:.3f} | "
            f"{hits} of {len(data['class_names'])} | {_signed(low)} … {_signed(high)} |"
        )
    return (
        "\n".join(lines)
        + f"\n\nWall time of the whole run {data['wall_seconds']:.0f} s, measured on "
        f"{_machine(data)}.\n"
    )


BLOCKS: dict[str, Callable[[], str]] = {
    "solvers-grid": render_solvers_grid,
    "solvers-decoder": render_solvers_decoder,
    "solvers-depth": render_solvers_depth,
    "label-to-image": render_label_to_image,
    "label-to-image-seeds": render_label_to_image_seeds,
}


# --- quotes --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StudyQuote:
    """A phrase of §§6–7 whose ``{fields}`` are numbers from a results file: the fields of
    ``gen_results.Quote``, which registers these (this module cannot import gen_results, which
    imports it)."""

    source: str
    phrase: str
    values: Callable[[str], dict[str, Any]]  # the page's text → the phrase's fields


def _grid(_page: str) -> dict[str, Any]:
    data = _load("study_solvers_grid")
    cells = study_solvers.grid_cells(data["rows"], data["target"])

    def best(init: str, schedule: str, solver: str, T: int) -> float:
        value = cells[(init, schedule, solver, T)].best
        assert value is not None, f"every seed of {init, schedule, solver, T} diverged"
        return value

    def smm(init: str, schedule: str, solver: str, T: int) -> str:
        value = cells[(init, schedule, solver, T)].smm
        return f"{value:,.0f}" if value is not None else "—"

    def cheapest(init: str, *schedules: str) -> tuple[float, tuple[str, str, str, int]]:
        """The fewest SMMs to the target of a cell where every seed reached it, and the cell."""
        return min(
            (c.smm, k)
            for k, c in cells.items()
            if k[0] == init and k[1] in schedules and c.smm is not None and c.reached == c.seeds
        )

    f_cheap, (_, schedule, solver, T) = cheapest("forward", "standard", "incremental")
    f_std, _ = cheapest("forward", "standard")
    losses = [
        100 * (best("hybrid", "standard", s, t) - best("hybrid", "incremental", s, t))
        for s in ("sgd", "heun")
        for t in (2, 4, 8)
    ]
    broken = cells[("forward", "incremental", "sgd", 2)]
    heun2 = cells[("forward", "standard", "heun", 2)]
    return {
        "sgd2": f"{best('forward', 'standard', 'sgd', 2):.3f}",
        "heun2": f"{best('forward', 'standard', 'heun', 2):.3f}",
        "heun2_reached": heun2.reached,
        "seeds": heun2.seeds,
        **{
            f"{s}{t}": f"{best('forward', 'standard', s, t):.3f}"
            for s in ("sgd", "heun")
            for t in (4, 8)
        },
        **{
            f"{s}{t}_smm": smm("forward", "standard", s, t) for s in ("sgd", "heun") for t in (4, 8)
        },
        "h1": smm("hybrid", "standard", "sgd", 1),
        "h2": smm("hybrid", "standard", "sgd", 2),
        "f_cheap": f"{f_cheap:,.0f}",
        "f_cheap_at": f"{schedule}, {'SGD' if solver == 'sgd' else 'Heun'}, T = {T}",
        "f_std": f"{f_std:,.0f}",
        "broken": f"{broken.best:.3f}",
        "broken_diverged": broken.diverged,
        "loss": f"{min(losses):.0f}–{max(losses):.0f}",
    }


def _decoder(_page: str) -> dict[str, Any]:
    cells = study_solvers.decoder_cells(_load("study_solvers_decoder")["rows"])

    def mse(init: str, schedule: str, solver: str, T: int, digits: int = 4) -> str:
        return f"{cells[(init, schedule, solver, T)].mse:.{digits}f}"

    def gain(T: int) -> str:
        inc, std = (cells[("memory", s, "sgd", T)].mse for s in ("incremental", "standard"))
        return f"{100 * (inc / std - 1):.0f}".replace("-", "−")  # type: ignore[operator]

    def smm_ratio(T: int) -> str:
        heun, sgd = (cells[("memory", "standard", s, T)].smm for s in ("heun", "sgd"))
        return f"{heun / sgd:.1f}"  # type: ignore[operator]

    memory = [c.mse for k, c in cells.items() if k[0] == "memory" and c.mse is not None]
    zero = [c.mse for k, c in cells.items() if k[0] == "zero" and c.mse is not None]
    return {
        "mi2": mse("memory", "incremental", "sgd", 2),
        "mi8": mse("memory", "incremental", "sgd", 8),
        "ms2": mse("memory", "standard", "sgd", 2),
        "ms8": mse("memory", "standard", "sgd", 8),
        "gain2": gain(2),
        "gain8": gain(8),
        "zi2": mse("zero", "incremental", "sgd", 2, 3),
        "zs2": mse("zero", "standard", "sgd", 2, 3),
        "zi8": mse("zero", "incremental", "sgd", 8, 3),
        "zs8": mse("zero", "standard", "sgd", 8, 3),
        "hs2": mse("memory", "standard", "heun", 2),
        "hs8": mse("memory", "standard", "heun", 8),
        "hi2": mse("memory", "incremental", "heun", 2),
        "hi8": mse("memory", "incremental", "heun", 8),
        "smm2": smm_ratio(2),
        "smm8": smm_ratio(8),
        "memory_worst": f"{max(memory):.4f}",
        "zero_best": f"{min(zero):.4f}",
    }


def _depth(_page: str) -> dict[str, Any]:
    rows = _load("study_solvers_depth")["rows"]
    cells = study_solvers.depth_cells(rows)
    mupc = [c.accuracy for (_, p), c in cells.items() if p == "mupc" and c.accuracy is not None]
    deepest = max(d for d, _ in cells)
    return {
        "mupc": f"{min(mupc):.2f}–{max(mupc):.2f}",
        "mupc_trained": sum(c.trained for (_, p), c in cells.items() if p == "mupc"),
        "runs": sum(1 for r in rows if r["parameterization"] == "mupc"),
        "sp8": f"{cells[(8, 'sp')].accuracy:.2f}",
        "sp32": f"{cells[(32, 'sp')].accuracy:.2f}",
        "deepest": deepest,
        "sp_diverged": cells[(deepest, "sp")].diverged,
        "seeds": cells[(deepest, "sp")].trained + cells[(deepest, "sp")].diverged,
    }


def _label(_page: str) -> dict[str, Any]:
    data = _load("label_to_image")
    runs, summary = data["runs"], data["summary"]
    rec = summary["recognition"]
    judge = [r["classifier_test_accuracy"] for r in runs]
    scales = [v for r in runs for v in r["residual_scales"].values()]
    disc = [r["discriminative"] for r in runs]
    pc_acc = [d["pc_test_accuracy"] for d in disc]
    amplitude = [max(abs(v) for v in d["pixel_range"]) for d in disc]
    classes = len(data["class_names"])
    return {
        "judge": f"{statistics.fmean(judge):.3f} ± {statistics.pstdev(judge):.3f}",
        "judge_seeds": ", ".join(f"{a:.3f}" for a in judge),
        "judge_pct": f"{100 * statistics.fmean(judge):.0f}",
        "s_low": f"{min(scales):.2f}",
        "s_high": f"{max(scales):.2f}",
        "fold": f"{1 / max(scales):.0f}–{1 / min(scales):.0f}",
        "tau1": f"{100 * rec['1']['overall_mean']:.1f}",
        "tau1_round": f"{100 * rec['1']['overall_mean']:.0f}",
        "proto": f"{100 * rec['0']['overall_mean']:.0f}",
        "tau2": f"{100 * rec['2']['overall_mean']:.1f}",
        "unit": f"{100 * rec['unit']['overall_mean']:.1f}",
        "pc_acc": f"{min(pc_acc):.3f}–{max(pc_acc):.3f}",
        "T_disc": f"{data['config']['T_disc']:,}",
        "disc": f"{summary['discriminative']['overall_mean']:.3f} ± "
        f"{summary['discriminative']['overall_std']:.3f}",
        "disc_classes": ", ".join(
            str(round(d["recognition"]["overall"] * classes)) for d in disc[:-1]
        )
        + f" and {round(disc[-1]['recognition']['overall'] * classes)} of {classes}",
        "amplitude": f"{min(amplitude):.2f}–{max(amplitude):.2f}",
    }


_GRID, _DECODER = (
    "docs/data/results/study_solvers_grid.json",
    "docs/data/results/study_solvers_decoder.json",
)
_DEPTH, _LABEL = (
    "docs/data/results/study_solvers_depth.json",
    "docs/data/results/label_to_image.json",
)

QUOTES: tuple[StudyQuote, ...] = (
    StudyQuote(
        _GRID,
        "At T = 2, forward init with SGD never reaches 0.75 ({sgd2}); with Heun it does in "
        "{heun2_reached} of {seeds} seeds ({heun2} best).",
        _grid,
    ),
    StudyQuote(
        _GRID,
        "At T ≥ 4 Heun buys no accuracy ({heun4} vs {sgd4} at T = 4, {heun8} vs {sgd8} at T = 8) "
        "and costs more SMMs to 0.75 ({heun4_smm} vs {sgd4_smm} at T = 4, {heun8_smm} vs "
        "{sgd8_smm} at T = 8).",
        _grid,
    ),
    StudyQuote(
        _GRID,
        "{h1}–{h2} SMMs to 0.75 at T = 1–2 with SGD, against {f_cheap} for the cheapest forward "
        "setting ({f_cheap_at}) and {f_std} for the cheapest with standard PC",
        _grid,
    ),
    StudyQuote(
        _GRID,
        "forward + SGD at T = 2 diverged in {broken_diverged} of {seeds} seeds and its best "
        "accuracy averaged {broken} in the others, and hybrid lost {loss} points at T ≥ 2",
        _grid,
    ),
    StudyQuote(
        _DECODER,
        "{mi2} at T = 2 and {mi8} at T = 8 (SGD), against {ms2} and {ms8} for standard PC with "
        "memory init ({gain2} % and {gain8} %)",
        _decoder,
    ),
    StudyQuote(
        _DECODER,
        "Memory init beats zero in every cell (the worst memory cell {memory_worst}, the best zero "
        "cell {zero_best}).",
        _decoder,
    ),
    StudyQuote(
        _DECODER,
        "With zero init, iPC changes little ({zi2} vs {zs2} at T = 2; {zi8} vs {zs8} at T = 8)",
        _decoder,
    ),
    StudyQuote(
        _DECODER,
        "with memory init and standard PC it matched SGD ({hs2} vs {ms2} at T = 2, {hs8} vs {ms8} "
        "at T = 8), under iPC it was worse ({hi2} vs {mi2}, {hi8} vs {mi8}), at {smm2}× (T = 2) "
        "and {smm8}× (T = 8) the SMMs",
        _decoder,
    ),
    StudyQuote(
        _DEPTH,
        "μPC trained in {mupc_trained} of {runs} runs and keeps accuracy nearly flat from 8 to "
        "{deepest} layers ({mupc}) at one learning rate, where the standard parameterization with "
        "the same rates is far below it at 8 layers ({sp8}) and still below at 32 ({sp32}), and "
        "its inference diverges at {deepest} layers in {sp_diverged} of {seeds} seeds.",
        _depth,
    ),
    StudyQuote(_LABEL, "**{judge}** ({judge_seeds})", _label),
    StudyQuote(
        _LABEL,
        "{tau1} % with the calibrated noise, {proto} % for the prototypes",
        _label,
    ),
    StudyQuote(
        _LABEL,
        "(τ = 2: {tau2} %); the Gaussian model's own unit variance gives {unit} %, because the "
        "hidden states inference reaches in training lie within about {s_low}–{s_high} of their "
        "predictions (the residual scales), so precision 1 overstates their spread {fold}-fold. "
        "And {tau1_round} % against the classifier's {judge_pct} % on real images",
        _label,
    ),
    StudyQuote(
        _LABEL,
        "test accuracy {pc_acc}; then y clamped, x free from zeros, {T_disc} inference steps",
        _label,
    ),
    StudyQuote(
        _LABEL,
        "recognised at {disc} ({disc_classes} classes)",
        _label,
    ),
    StudyQuote(_LABEL, "a low-amplitude pattern within ±{amplitude} of 0", _label),
)


# --- keeping a run -------------------------------------------------------------------------------
def _commit() -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    )
    return out.stdout.strip() or "?"


def _kept(source: Path, note: str, commit: str) -> dict[str, str]:
    mtime = datetime.datetime.fromtimestamp(source.stat().st_mtime, datetime.UTC)
    return {"date": mtime.strftime("%Y-%m-%d"), "commit": commit, "note": note}


def _write(name: str, data: dict[str, Any]) -> Path:
    """``docs/data/results/NAME.json``, with one line per record of ``rows``."""
    rows = data.get("rows")
    text = json.dumps({k: v for k, v in data.items() if k != "rows"}, indent=1, ensure_ascii=False)
    if rows is not None:
        lines = ",\n  ".join(json.dumps(r, ensure_ascii=False) for r in rows)
        text = text.removesuffix("\n}") + f',\n "rows": [\n  {lines}\n ]\n}}'
    target = DATA / f"{name}.json"
    target.write_text(text + "\n", encoding="utf-8")
    json.loads(target.read_text(encoding="utf-8"))  # what was written reads back
    return target


def _cpu() -> dict[str, Any]:
    """This machine's CPU model, cores and widest vector extension (float32 results move with
    the kernels it runs)."""
    text = Path("/proc/cpuinfo").read_text(errors="replace")
    names = [line.split(":", 1)[1].strip() for line in text.splitlines() if "model name" in line]
    vector = next((v for v in ("avx512f", "avx2", "avx") if f" {v}" in text), "?")
    return {"cpu": names[0] if names else "?", "cores": os.cpu_count(), "vector": vector}


def _ms(seconds: Any) -> Any:
    """Wall times to the millisecond (a list of them or one)."""
    return [round(s, 3) for s in seconds] if isinstance(seconds, list) else round(seconds, 3)


def keep(study: Path | None, label: Path | None, note: str, commit: str) -> list[Path]:
    """Copy the study's logs (``study/{grid,decoder,depth}.jsonl``) and the label generator's
    ``label/results.json`` to ``docs/data/results/``, stamped with ``kept``."""
    written = []
    machine = _cpu() | {"threads": 1, "torch": torch.__version__.split("+")[0]}  # --threads 1
    for part in PARTS:
        log = study / f"{part}.jsonl" if study else None
        if log is None or not log.is_file():
            continue
        rows = [r | {"wall_s": _ms(r["wall_s"])} for r in study_solvers.read_log(log)]
        data: dict[str, Any] = {
            "kept": _kept(log, note, commit),
            "command": f"python scripts/study_solvers.py {part} --log runs/study/{part}.jsonl",
            "machine": machine,
        }
        if part == "grid":
            data["target"] = GRID_TARGET
        written.append(_write(f"study_solvers_{part}", data | {"rows": rows}))
    results = label / "results.json" if label else None
    if results is not None and results.is_file():
        data = json.loads(results.read_text(encoding="utf-8"))
        m = data.pop("machine")
        data["machine"] = _cpu() | m | {"torch": m["torch"].split("+")[0]}
        data["config"] = {k: v for k, v in data["config"].items() if k != "out"}
        written.append(_write("label_to_image", {"kept": _kept(results, note, commit), **data}))
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="keep §§6–7's runs in docs/data/results/")
    ap.add_argument("--study", type=Path, help="the folder of study_solvers.py's logs")
    ap.add_argument("--label", type=Path, help="label_to_image.py's --out")
    ap.add_argument("--note", required=True, help="what ran beside the runs")
    ap.add_argument("--commit", default=None, help="the commit the runs ran at (default HEAD)")
    args = ap.parse_args(argv)
    for path in keep(args.study, args.label, args.note, args.commit or _commit()):
        print(f"kept {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
