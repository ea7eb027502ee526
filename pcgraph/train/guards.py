"""What the Trainer checks of its data and of the weights: widths per node, ``bernoulli``
targets in [0, 1], the shape of a DataLoader's batches, finite parameters after every update.

Each check raises a pcgraph error naming the node, parameter or batch, the values found and the
fix; on healthy data and weights each costs one reduction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from pcgraph.data import DataError
from pcgraph.data.checks import as_float_images, check_labels
from pcgraph.errors import ClampError, EnergyError

if TYPE_CHECKING:
    from pcgraph.compiler.network import PCNetwork

__all__ = ["check_bernoulli_targets", "check_finite_params", "check_width", "loader_batch"]


def check_width(net: PCNetwork, nodes: list[str], shape: list[int], where: str, role: str) -> None:
    """Refuse images of ``shape`` ([N, …]) whose values per sample do not fill ``nodes``."""
    numel = math.prod(shape[1:])
    total = sum(net.node(n).size for n in nodes)
    if numel != total:
        shapes = ", ".join(f"{n!r} {list(net.node(n).shape)}" for n in nodes)
        raise ClampError(
            f"{where}: each image has shape {shape[1:]} ({numel} values) but the graph's "
            f"{role} node(s) {shapes} hold {total}; use a topology made for this data, or "
            f"resize or flatten the images to {total} values"
        )


def check_bernoulli_targets(net: PCNetwork, data: Mapping[str, torch.Tensor], where: str) -> None:
    """Refuse data for a ``bernoulli`` node outside [0, 1] (its energy is a log-likelihood of
    values in [0, 1]; −1 … 1 or 0 … 255 would train on a meaningless energy)."""
    for name, value in data.items():
        if net.node(name).energy != "bernoulli" or value.numel() == 0:
            continue
        low, high = float(value.min()), float(value.max())
        if low < 0.0 or high > 1.0:
            raise DataError(
                f"{where}: node {name!r} has a bernoulli energy, whose targets lie in [0, 1], "
                f"but its data range over [{low:g}, {high:g}]; rescale the data to [0, 1] "
                "(e.g. (x + 1) / 2, or x / 255) or give the node a gaussian energy"
            )


def loader_batch(
    net: PCNetwork,
    item: Any,
    where: str,
    *,
    nodes: list[str],
    role: str,
    num_classes: int | None,
    warn_uint8: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The (images, labels) of one DataLoader batch, checked: a pair with a batch axis, real
    images as wide as ``nodes`` (uint8 scaled to [0, 1]), and, with ``num_classes``, one
    whole-number label in [0, C) per image."""
    if not isinstance(item, tuple | list) or len(item) < 2:
        raise DataError(f"{where} is a {type(item).__name__}; expected (inputs, labels) batches")
    images, labels = item[0], item[1]
    if not isinstance(images, torch.Tensor):
        raise DataError(f"{where}: the inputs are a {type(images).__name__}, not a tensor")
    if isinstance(labels, int | float) or (isinstance(labels, torch.Tensor) and labels.dim() == 0):
        raise DataError(
            f"{where} is a single sample (inputs of shape {list(images.shape)}, one label): the "
            "DataLoader does not batch (batch_size=None); pass DataLoader(..., batch_size=B)"
        )
    images = as_float_images(images, where, warn=warn_uint8)
    check_width(net, nodes, list(images.shape), where, role)
    if num_classes is None:
        return images, None
    labels = check_labels(labels, where, num_classes=num_classes)
    if len(labels) != images.shape[0]:
        raise DataError(
            f"{where}: {images.shape[0]} inputs but {len(labels)} labels; pass one class index "
            "per input"
        )
    return images, labels


def check_finite_params(net: PCNetwork, optimizer: torch.optim.Optimizer, step: int) -> None:
    """Raise EnergyError naming the first parameter that holds a NaN or ±inf after update
    ``step``. On healthy weights: one sum per tensor and one host sync (a NaN or ±inf makes
    its tensor's sum non-finite; an overflow of huge finite values may too, hence the exact
    test before reporting)."""
    params = list(net.named_parameters())
    if not params:
        return
    sums = torch.stack([p.detach().sum(dtype=torch.float32) for _, p in params])
    if bool(torch.isfinite(sums).all()):
        return
    bad = [n for n, p in params if not bool(torch.isfinite(p).all())]
    if not bad:
        return
    name = bad[0]
    lrs = sorted({float(g["lr"]) for g in optimizer.param_groups if "lr" in g})
    lr = f" (lr={', '.join(f'{v:g}' for v in lrs)})" if lrs else ""
    raise EnergyError(
        f"weight update {step}: parameter {name!r} holds NaN or infinite values after the "
        f"optimizer step; lower the weight learning rate{lr}, e.g. by 10×, or clip the "
        "gradients — the run is stopped before this epoch is reported or saved"
    )
