"""Argument checks of the engine's public entry points, done once per call, outside the loop.

Each turns a value torch would choke on (or, worse, silently accept) into one error of the
pcgraph family naming the argument and the fix: :class:`~pcgraph.errors.ConfigError` for
options, :class:`~pcgraph.errors.ClampError` for the data of clamped nodes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from pcgraph.compiler.network import PCNetwork
from pcgraph.errors import ClampError, ConfigError, EnergyError
from pcgraph.limits import check_step_limit

__all__ = [
    "GRAD_MODES",
    "check_choice",
    "check_clamped_data",
    "check_growth",
    "check_optimizer_params",
    "check_positive",
    "check_steps",
]

GRAD_MODES = ("local", "autograd")


def check_steps(T: Any, name: str = "T") -> int:
    """T is a whole number from 0 to :data:`pcgraph.limits.MAX_STEPS` (not a float, not a
    bool): more would not fail but run for hours."""
    if isinstance(T, bool) or not isinstance(T, int):
        raise ConfigError(f"{name} (inference steps) must be a whole number ≥ 0, got {T!r}")
    if T < 0:
        raise ConfigError(f"{name} (inference steps) must be ≥ 0, got {T}")
    check_step_limit(T, name)
    return T


def check_positive(value: Any, name: str) -> float:
    """A finite number > 0 (learning rates)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number > 0, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a finite number > 0, got {value}")
    return float(value)


def check_choice(value: Any, name: str, valid: Iterable[str]) -> str:
    valid = tuple(valid)
    if value not in valid:
        raise ConfigError(f"{name} {value!r} is not one of: {', '.join(valid)}")
    return str(value)


def check_optimizer_params(net: PCNetwork, optimizer: torch.optim.Optimizer) -> None:
    """The optimizer updates this network's parameters: one built over another network would
    step weights that never get gradients and leave these unchanged. (Extra tensors of the
    user's beside the network's are allowed.)"""
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ConfigError(
            f"optimizer must be a torch.optim.Optimizer over the network's parameters, got "
            f"{type(optimizer).__name__} {optimizer!r:.40}; e.g. "
            "torch.optim.AdamW(net.parameters(), lr=1e-3)"
        )
    own = {id(p) for p in net.parameters()}
    held = [p for group in optimizer.param_groups for p in group["params"]]
    if own and not any(id(p) in own for p in held):
        raise ConfigError(
            f"the optimizer holds none of this network's parameters ({len(held)} other "
            "tensors); build it over net.parameters() of the network you train, e.g. "
            "torch.optim.AdamW(net.parameters(), lr=1e-3)"
        )


def check_clamped_data(
    net: PCNetwork, data: Mapping[str, Any], *, check_finite: bool = True
) -> dict[str, torch.Tensor]:
    """Tensors of one batch size ≥ 1 with finite values, one per clamped node."""
    out: dict[str, torch.Tensor] = {}
    for name, value in data.items():
        if not isinstance(value, torch.Tensor):
            raise ClampError(
                f"data for node {name!r} is a {type(value).__name__}, not a tensor; pass "
                f"torch.as_tensor(...) of shape [B, {', '.join(map(str, net.node(name).shape))}]"
            )
        if value.dim() == 0 or value.shape[0] == 0:
            raise ClampError(
                f"data for node {name!r} has shape {list(value.shape)}: an empty batch; pass "
                "at least one sample (batch first)"
            )
        if value.is_complex():
            raise ClampError(f"data for node {name!r} is complex; pass real values")
        # one reduction per batch: a NaN or ±inf makes the sum non-finite (so may an overflow of
        # huge values, hence the exact test before reporting)
        if (
            check_finite
            and value.is_floating_point()
            and not bool(torch.isfinite(value.sum()))
            and not bool(torch.isfinite(value).all())
        ):
            raise _non_finite_data(name, value)
        out[name] = value
    return out


def _non_finite_data(name: str, value: torch.Tensor) -> ClampError:
    """The error for NaN or ±inf in the data of clamped node ``name`` ([B, …])."""
    bad = int((~torch.isfinite(value)).flatten(1).any(1).nonzero()[0])
    return ClampError(
        f"data for node {name!r} holds NaN or infinite values (first in sample {bad}); "
        "clean or normalise the data before training"
    )


def check_clamped_states(net: PCNetwork, states: torch.Tensor, clamp: frozenset[str]) -> None:
    """Raise ClampError naming the first clamped node whose columns of ``states`` hold a NaN
    or ±inf (the data a caller clamped there)."""
    for n in net.nodes:
        if n.name not in clamp:
            continue
        cols = states[:, n.cols]
        if not bool(torch.isfinite(cols).all()):
            raise _non_finite_data(n.name, cols)


def check_growth(
    net: PCNetwork,
    before: torch.Tensor,
    final: torch.Tensor,
    initial: torch.Tensor | None,
    *,
    T: int,
    lr: float,
    bound: float | None,
    states: torch.Tensor | None = None,
    clamp: frozenset[str] = frozenset(),
    after: torch.Tensor | None = None,
) -> None:
    """Raise EnergyError when inference diverged: the energy at T is non-finite or rose by more
    than (``bound`` − 1) · |E(0)| (for a positive E(0): more than ``bound`` times it; gradient
    descent with a stable γ never increases it).

    Args:
        before: E at t = 0 (0-d); final: per-node energies at t = T [N]; initial: per-node at
            t = 0 when known (a trace), to name the node that grew most.
        states, clamp: the states and clamp set; when the energy is not finite, a NaN or ±inf
            in a clamped node's data is reported first, at that node. Clamped data reaches
            the energy through its products (and a forward sweep over non-finite values
            leaves no error taken as 0), so a finite energy rules it out: a healthy update
            pays no pass over its data.
        after: E at t = T (``final.sum()``) where the caller has it already.
    """
    if after is None:
        after = final.sum()
    if before.is_cpu and after.is_cpu:  # two reads, no stacking
        e0, e1 = float(before), float(after)
    else:
        e0, e1 = torch.stack((before.reshape(()), after.reshape(()))).tolist()  # one sync
    finite = math.isfinite(e0) and math.isfinite(e1)
    if not finite and states is not None:  # bad data first: name the node that holds it
        check_clamped_states(net, states, clamp)
    # the rise relative to |E(0)|, with a floor of 1 so that rounding above an E(0) ≈ 0 is no
    # "growth": E(T) > bound · E(0) for a positive E(0); a learned precision's log term can
    # make E negative, where a ratio says nothing
    grew = bound is not None and finite and e1 - e0 > (bound - 1.0) * max(abs(e0), 1.0)
    if finite and not grew:
        return
    names = [n.name for n in net.nodes]
    if not finite:
        bad = [names[i] for i in range(len(names)) if not torch.isfinite(final[i])]
        where = f"at node(s) {', '.join(bad)}"
        what = "became non-finite"
    else:
        growth = final if initial is None else final - initial
        where = f"most at node {names[int(torch.argmax(growth))]!r}"
        what = (
            f"grew from {e0:.4g} to {e1:.4g} (> {bound:g}×)"
            if e0 > 0
            else f"rose from {e0:.4g} to {e1:.4g} (by more than {bound:g}× |E(0)|)"
        )
    raise EnergyError(
        f"inference diverged: the energy {what} within {T} steps, {where}; lower the neuron "
        f"learning rate (γ={lr}) or the weight learning rate, or check the data"
    )
