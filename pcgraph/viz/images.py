"""``plot_reconstructions``: originals above the images each method produced from them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from pcgraph.viz._common import ArrayLike, PathLike, new_figure, save_figure, to_numpy

__all__ = ["plot_reconstructions"]


def _images(batch: Any, n: int, image_shape: tuple[int, ...], what: str) -> np.ndarray:
    """The first ``n`` samples as images clipped to [0, 1]: [n, H, W] or [n, H, W, C]."""
    arr = to_numpy(batch)
    size = int(np.prod(image_shape))
    if arr.ndim == 0 or arr.size % size or arr.shape[0] * size != arr.size:
        raise ValueError(
            f"{what}: expected [B, {size}] or [B, *{list(image_shape)}] values, "
            f"got shape {list(arr.shape)}"
        )
    if arr.shape[0] < n:
        raise ValueError(f"{what}: has {arr.shape[0]} samples, fewer than the {n} shown")
    images = np.clip(arr[:n].reshape(n, *image_shape), 0.0, 1.0)
    if len(image_shape) == 3:
        # channels first ([C, H, W], the torch convention) → [H, W, C]; one channel → grey
        images = np.moveaxis(images, 1, -1)
        if images.shape[-1] == 1:
            images = images[..., 0]
    return images


def plot_reconstructions(
    originals: ArrayLike,
    reconstructions: Mapping[str, ArrayLike],
    *,
    n: int = 8,
    image_shape: tuple[int, ...] = (28, 28),
    path: PathLike | None = None,
) -> Figure:
    """A grid: the originals in the first row, then one row per method, labelled on the left.

    Args:
        originals: [B, ∏image_shape] (or [B, *image_shape]) values; the first ``n`` are shown.
        reconstructions: ``{method: values}`` with the same layout as ``originals``.
        n: columns (samples) to show; at most B.
        image_shape: (H, W) for grey images, (C, H, W) for colour (C = 3) or grey (C = 1).
        path: also save the figure there (atomically).

    Returns:
        the Figure; values are clipped to [0, 1] and drawn without ticks.
    """
    n = min(n, int(to_numpy(originals).shape[0]))
    rows = [("original", _images(originals, n, image_shape, "originals"))]
    rows += [
        (label, _images(values, n, image_shape, f"reconstructions[{label!r}]"))
        for label, values in reconstructions.items()
    ]
    fig = new_figure(1.1 * n + 1.2, 1.1 * len(rows) + 0.2)
    axes = fig.subplots(len(rows), n, squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(images[c], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    if path is not None:
        save_figure(fig, path)
    return fig
