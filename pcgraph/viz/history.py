"""``plot_history``: training curves (energy, accuracy or MSE, SMMs) for one run or several."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from pcgraph.viz._common import PathLike, new_figure, save_figure, to_numpy

__all__ = ["HISTORY_PANELS", "plot_history"]

# panel title → the history keys it shows, each with its line style
HISTORY_PANELS: dict[str, dict[str, str]] = {
    "energy": {"energy": "-", "energy_after": "-", "energy_before": ":", "train_loss": "--"},
    "test accuracy": {"test_accuracy": "-"},
    "test MSE": {"test_mse": "-"},
    "sequential matmuls (SMMs)": {"smm_total": "-"},
}
# how a key is named in a legend (``energy`` is the usual name of the energy after inference)
_KEY_NAMES = {
    "energy": "energy after inference",
    "energy_after": "energy after inference",
    "energy_before": "energy before inference",
    "train_loss": "training loss",
}
_X_KEYS = ("epoch", "step")


def _is_history(obj: Any) -> bool:
    """A dict of lists or a list of dicts, as opposed to a ``{label: history}`` mapping."""
    if isinstance(obj, Mapping):
        return not any(isinstance(v, Mapping) or _is_records(v) for v in obj.values())
    return _is_records(obj)


def _is_records(obj: Any) -> bool:
    return (
        isinstance(obj, Sequence)
        and not isinstance(obj, str)
        and len(obj) > 0
        and all(isinstance(r, Mapping) for r in obj)
    )


def _columns(history: Any) -> dict[str, np.ndarray]:
    """Dict of float arrays; a list of records becomes columns (a missing value → NaN)."""
    if isinstance(history, Mapping):
        # lists, arrays or 1-d tensors; a scalar entry (a run's name) is not a column
        rows = {
            k: list(v)
            for k, v in history.items()
            if hasattr(v, "__len__") and not isinstance(v, str | bytes)
        }
    elif _is_records(history):
        keys = list(dict.fromkeys(k for r in history for k in r))
        rows = {k: [r.get(k) for r in history] for k in keys}
    else:
        raise TypeError(
            f"a history is a dict of lists or a list of dicts, got {type(history).__name__}"
        )
    out = {}
    for key, values in rows.items():
        try:
            out[key] = np.array([math.nan if v is None else float(to_numpy(v)) for v in values])
        except (TypeError, ValueError):
            continue  # a non-numeric column (e.g. the initializer's name) is not plotted
    return out


def _x_axis(cols: Mapping[str, np.ndarray], length: int) -> tuple[np.ndarray, str]:
    for key in _X_KEYS:
        if key in cols and len(cols[key]) == length:
            return cols[key], key
    return np.arange(length, dtype=float), "epoch"


def plot_history(history: Any, *, path: PathLike | None = None) -> Figure:
    """Training curves, one panel per quantity present: energy (and training loss),
    test accuracy, test MSE, cumulative SMMs. The x axis is ``epoch`` or ``step`` when recorded,
    else the record index.

    Args:
        history: a dict of lists (``{"energy": [...], "test_accuracy": [...]}``), a list of dicts
            (one per epoch), or ``{label: history}`` for several runs to overlay (e.g. one per
            initialization). Recognised keys: ``energy``/``energy_after``, ``energy_before``,
            ``train_loss``, ``test_accuracy``, ``test_mse``, ``smm_total``, ``epoch``/``step``;
            others are ignored.
        path: also save the figure there (atomically).

    Returns:
        the Figure.

    Raises:
        ValueError: when no recognised quantity is present.
    """
    runs: dict[str, dict[str, np.ndarray]]
    if _is_history(history):
        runs = {"": _columns(history)}
    elif isinstance(history, Mapping):
        runs = {str(label): _columns(h) for label, h in history.items()}
    else:
        raise TypeError(
            "history must be a dict of lists, a list of dicts, or {label: history}; "
            f"got {type(history).__name__}"
        )
    panels = [
        (title, keys)
        for title, keys in HISTORY_PANELS.items()
        if any(k in cols for cols in runs.values() for k in keys)
    ]
    if not panels:
        known = [k for keys in HISTORY_PANELS.values() for k in keys]
        present = sorted({k for cols in runs.values() for k in cols})
        raise ValueError(
            f"nothing to plot: the history has {', '.join(present) or 'no numeric keys'}; "
            f"recognised keys: {', '.join(known)}"
        )
    fig = new_figure(4.2 * len(panels), 3.4)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    colours = [f"C{i % 10}" for i in range(len(runs))]
    every_run: dict[str, str] = {}  # label → colour, over all panels
    for ax, (title, keys) in zip(axes, panels, strict=True):
        xlabel = "epoch"
        runs_drawn: dict[str, str] = {}
        keys_drawn: dict[str, str] = {}
        for colour, (label, cols) in zip(colours, runs.items(), strict=True):
            for key, style in keys.items():
                if key not in cols:
                    continue
                y = cols[key]
                x, xlabel = _x_axis(cols, len(y))
                keep = np.isfinite(y) & np.isfinite(x)
                ax.plot(x[keep], y[keep], style, color=colour, marker=".", ms=4)
                runs_drawn[label] = colour
                keys_drawn[_KEY_NAMES.get(key, key)] = style
        ax.set_title(title if title != "energy" or _KEY_NAMES["train_loss"] not in keys_drawn else
                     "energy and training loss", fontsize=10)  # fmt: skip
        ax.set_xlabel(xlabel)
        if xlabel in ("epoch", "step"):
            ax.xaxis.get_major_locator().set_params(integer=True)  # whole epochs / steps
            xs = {float(v) for line in ax.get_lines() for v in line.get_xdata()}
            if len(xs) == 1:  # one record: its own tick (the locator falls back to fractions)
                ax.set_xticks(sorted(xs))
        if title == "energy":  # the Trainer's energy: the epoch's summed E over its samples
            ax.set_ylabel("energy per sample")
        ax.grid(alpha=0.3)
        if title == "energy" and _spans_decades(ax):
            ax.set_yscale("log")
        # quantities by line style, in the panel, when it has more than one
        if len(keys_drawn) > 1:
            handles = [Line2D([], [], color="k", ls=s, label=k) for k, s in keys_drawn.items()]
            ax.legend(handles=handles, fontsize=8)
        every_run.update(runs_drawn)
    if len(runs) > 1:  # runs by colour: one legend for all panels, beside them (covers no curve)
        fig.legend(
            handles=[Line2D([], [], color=c, label=r) for r, c in every_run.items()],
            loc="center left",
            bbox_to_anchor=(1.0, 0.5),
            fontsize=8,
        )
    if path is not None:
        save_figure(fig, path)
    return fig


def _spans_decades(ax: Any) -> bool:
    """Whether the plotted values are all positive and span more than two decades."""
    values = np.concatenate([np.asarray(line.get_ydata(), dtype=float) for line in ax.get_lines()])
    values = values[np.isfinite(values)]
    return values.size > 0 and bool(values.min() > 0) and values.max() > 100 * values.min()
