"""Print the Markdown tables of docs/results.md from the experiments' ``results.json`` files.

Usage (after the commands shown in docs/results.md)::

    python scripts/results_tables.py runs/results

reads ``classification/``, ``init_comparison/``, ``cyclic/`` and the main job's ``decoder/``,
``decoder_s1/``, ``decoder_s2/`` under the given folder (those present) and prints each
section's tables in the page's layout, so that every number on the page can be traced to a run.
Means and standard deviations are over seeds (population std, as the examples' own summaries);
"SMMs to a target" is the cumulative SMM count at the first epoch whose test accuracy reached
it, averaged over the seeds that reached it (epoch granularity). The best mean of a column is
in bold.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

Run = dict[str, Any]


def _load(folder: Path) -> dict[str, Any] | None:
    path = folder / "results.json"
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _ms(values: list[float], digits: int = 3) -> str:
    mean = statistics.fmean(values)
    std = statistics.pstdev(values) if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _first(run: Run, target: float) -> int | None:
    """Index of the first epoch whose test accuracy reached ``target``."""
    return next((i for i, a in enumerate(run["test_accuracy"]) if a >= target), None)


def _groups(runs: list[Run]) -> dict[tuple[str, Any], list[Run]]:
    """The runs by (method, T), in their order of first appearance (seeds together)."""
    out: dict[tuple[str, Any], list[Run]] = defaultdict(list)
    for r in runs:
        out[(r["method"], r.get("T"))].append(r)
    return out


def _bold_max(cells: dict[tuple[str, Any], str], means: dict[tuple[str, Any], float]) -> None:
    best = max(means.values())
    for k, v in means.items():
        if v == best:
            cells[k] = f"**{cells[k]}**"


def _accuracy_cells(
    groups: dict[tuple[str, Any], list[Run]],
) -> tuple[dict[tuple[str, Any], str], dict[tuple[str, Any], str]]:
    """The final and the best test accuracy of each group as 'mean ± std', best mean in bold."""
    out = []
    for pick in (lambda acc: acc[-1], max):
        cells = {k: _ms([pick(r["test_accuracy"]) for r in v]) for k, v in groups.items()}
        means = {
            k: statistics.fmean(pick(r["test_accuracy"]) for r in v) for k, v in groups.items()
        }
        _bold_max(cells, means)
        out.append(cells)
    return out[0], out[1]


def classification_main(data: dict[str, Any]) -> str:
    """§1's main table: per (method, T) the SMMs per update, final and best accuracy, the seeds
    reaching the target and the SMMs and training seconds to it."""
    target = float(data["target"])
    groups = _groups(data["runs"])
    lines = [
        f"| method | T | SMM / update | final acc | best acc | seeds ≥ {target:.2f} | "
        f"SMMs to {target:.2f} | train s to {target:.2f} | train s total |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    final_cells, best_cells = _accuracy_cells(groups)
    for k, v in groups.items():
        hits = [(r, i) for r in v if (i := _first(r, target)) is not None]
        smm = f"{statistics.fmean(r['smm_total'][i] for r, i in hits):.0f}" if hits else "—"
        sec = f"{statistics.fmean(r['train_seconds'][i] for r, i in hits):.1f}" if hits else "—"
        total = statistics.fmean(r["train_seconds"][-1] for r in v)
        lines.append(
            f"| {k[0]} | {k[1] if k[1] is not None else '—'} | {v[0]['smm_per_update']} | "
            f"{final_cells[k]} | {best_cells[k]} | {len(hits)}/{len(v)} | {smm} | {sec} | "
            f"{total:.1f} |"
        )
    return "\n".join(lines)


def classification_targets(data: dict[str, Any]) -> str:
    """§1's second table: SMMs to each accuracy target."""
    return _targets(_groups(data["runs"]))


def classification(data: dict[str, Any]) -> str:
    return classification_main(data) + "\n\n" + classification_targets(data)


def _targets(groups: dict[tuple[str, Any], list[Run]]) -> str:
    """SMMs to each accuracy target: BP, forward and average at their best T, hybrid T = 2."""

    def reach(v: list[Run], target: float) -> tuple[float, int] | None:
        hits = [r["smm_total"][i] for r in v if (i := _first(r, target)) is not None]
        return (statistics.fmean(hits), len(hits)) if hits else None

    def cell(found: tuple[float, int] | None, n: int, label: str = "") -> str:
        if found is None:
            return "never"
        smm, seeds = found
        extra = [label] if label else []
        if seeds < n:
            extra.append(f"{seeds}/{n} seeds")
        return f"{smm:.0f}" + (f" ({', '.join(extra)})" if extra else "")

    lines = [
        "| target | BP | forward (best T) | average (best T) | hybrid T=2 |",
        "|---|---|---|---|---|",
    ]
    for target in (0.75, 0.80, 0.82, 0.84):
        row = [f"{target:.2f}"]
        for method, fixed_t in (("bp", None), ("forward", "best"), ("average", "best")):
            options = [(k, v) for k, v in groups.items() if k[0] == method]
            found = [(reach(v, target), k, len(v)) for k, v in options]
            found = [f for f in found if f[0] is not None]
            if not found:
                row.append("never")
                continue
            best = min(found, key=lambda f: (-f[0][1], f[0][0]))  # most seeds, then fewest SMMs
            label = "" if fixed_t is None else f"T={best[1][1]}"
            row.append(cell(best[0], best[2], label))
        hybrid = groups.get(("hybrid", 2))
        row.append("—" if hybrid is None else cell(reach(hybrid, target), len(hybrid)))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def init_table(data: dict[str, Any], which: str) -> str:
    """§2's table of the ``best`` (the best mean of each T in bold) or the ``final`` test
    accuracy per init and T."""
    groups = _groups(data["runs"])
    inits = list(dict.fromkeys(k[0] for k in groups))
    ts = sorted({k[1] for k in groups})
    pick = max if which == "best" else (lambda acc: acc[-1])
    cells = {k: _ms([pick(r["test_accuracy"]) for r in v]) for k, v in groups.items()}
    for t in ts if which == "best" else ():  # bold the best mean of each T
        col = {
            k: statistics.fmean(pick(r["test_accuracy"]) for r in v)
            for k, v in groups.items()
            if k[1] == t
        }
        _bold_max(cells, col)
    rows = ["| init | " + " | ".join(f"T={t}" for t in ts) + " |", "|---|" + "---|" * len(ts)]
    rows += [f"| {i} | " + " | ".join(cells.get((i, t), "—") for t in ts) + " |" for i in inits]
    return "\n".join(rows)


def init_comparison(data: dict[str, Any]) -> str:
    return "\n\n".join(
        f"{which} accuracy:\n\n" + init_table(data, which) for which in ("best", "final")
    )


def cyclic(data: dict[str, Any]) -> str:
    groups = _groups(data["runs"])
    final_cells, best_cells = _accuracy_cells(groups)
    lines = [
        "| init | T = T_eval | SMM / update | final acc | best acc | "
        "energy / sample at init (last epoch) | after T steps |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, v in groups.items():
        e0 = statistics.fmean(r["energy_before"][-1] for r in v)
        e1 = statistics.fmean(r["energy_after"][-1] for r in v)
        lines.append(
            f"| {k[0]} | {k[1]} | {v[0]['smm_per_update']} | {final_cells[k]} | "
            f"{best_cells[k]} | {e0:.3f} | {e1:.3f} |"
        )
    return "\n".join(lines)


def decoder(folder: Path) -> str | None:
    """The main job's default run over seeds 0, 1, 2 (``decoder``, whose rows carry their seed;
    or, from before the main job ran its seeds itself, ``decoder``, ``decoder_s1``,
    ``decoder_s2``), as :func:`decoder_table`."""
    first = _load(folder / "decoder")
    if first is not None and all("seed" in row for row in first["results"]):
        runs = [first]
    else:
        runs = [first] + [_load(folder / name) for name in ("decoder_s1", "decoder_s2")]
    if any(r is None for r in runs):
        return None
    return decoder_table([r for r in runs if r is not None])


def decoder_table(runs: list[dict[str, Any]]) -> str:
    """Test MSE per (init, T_train) and T_eval: per seed and the mean, the best mean of each
    column in bold."""
    cells: dict[tuple[str, int], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for data in runs:
        for row in sorted(data["results"], key=lambda r: r.get("seed", 0)):
            cells[(row["init"], row["T_train"])][row["T_eval"]].append(row["test_mse"])
    evals = sorted({t for v in cells.values() for t in v})
    best = {t: min(statistics.fmean(v[t]) for v in cells.values()) for t in evals}
    lines = [
        "| init | T_train | " + " | ".join(f"T_eval={t}" for t in evals) + " |",
        "|---|---|" + "---|" * len(evals),
    ]
    for (init, t_train), by_eval in cells.items():
        row = []
        for t in evals:
            mean = statistics.fmean(by_eval[t])
            m = f"{mean:.4f}"
            row.append(
                " / ".join(f"{v:.4f}" for v in by_eval[t])
                + " → "
                + (f"**{m}**" if mean == best[t] else m)
            )
        lines.append(f"| {init} | {t_train} | " + " | ".join(row) + " |")
    return "\n".join(lines)


SECTIONS = {
    "classification": classification,
    "init_comparison": init_comparison,
    "cyclic": cyclic,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path, help="the --out parent of the experiments")
    args = p.parse_args(argv)
    found = False
    for name, render in SECTIONS.items():
        data = _load(args.folder / name)
        if data is None:
            continue
        found = True
        wall = data.get("wall_seconds")
        print(
            f"## {name} ({data.get('n_train')} train, {data.get('n_test')} test, "
            f"{data.get('data_source')}, wall {wall:.0f} s)\n"
            if wall
            else f"## {name}\n"
        )
        print(render(data) + "\n")
    table = decoder(args.folder)
    if table is not None:
        found = True
        print("## decoder (seeds 0 / 1 / 2 → mean)\n")
        print(table + "\n")
    if not found:
        print(f"no results.json under {args.folder}/{{{','.join(SECTIONS)}}}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
