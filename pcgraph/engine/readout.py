"""Reading a trained network out: predict (inputs → outputs), reconstruct (observations → latents →
observations), and query (any clamp subset)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch

from pcgraph.analysis import check_forward_init
from pcgraph.errors import ClampError
from pcgraph.init import ForwardInit, Initializer, forward_order

if TYPE_CHECKING:
    from pcgraph.engine.learning import PCLearner

__all__ = ["predict", "query", "reconstruct"]


def query(
    learner: PCLearner,
    observed: Mapping[str, torch.Tensor],
    *,
    T: int | None = None,
    init: str | Initializer | None = None,
) -> dict[str, torch.Tensor]:
    """Clamp ``observed`` (any subset of nodes), initialize the rest with the learner's
    initializer (evaluation mode: no labels), infer T steps, and return every free node's state.

    Args:
        init: initialize with this instead (a name or an initializer), e.g. ``"zero"`` under a
            clamp set the learner's memory was not trained for (where it raises InitError).

    Returns:
        name → [B, *shape] (copies) for the free nodes.
    """
    clamp = frozenset(observed)
    result = learner.infer(observed, clamp=clamp, T=T, train=False, init=init)
    net = learner.net
    return {
        n.name: net.view(result.states, n.name).clone() for n in net.nodes if n.name not in clamp
    }


def predict(
    learner: PCLearner, inputs: Mapping[str, torch.Tensor], *, T: int | None = None
) -> dict[str, torch.Tensor]:
    """Clamp ``inputs`` and read the other nodes: an exact forward sweep where Proposition 3.2
    allows it (zero internal energy), inference from the learner's initializer otherwise."""
    net = learner.net
    clamp = frozenset(inputs)
    if not check_forward_init(net.graph, clamp)[0]:
        missing = [n for n in net.spec.names_with_role("input") if n not in clamp]
        if missing and inputs:
            raise ClampError(
                f"predict clamps the graph's inputs, but {', '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not given (given: "
                f"{', '.join(sorted(clamp))}); pass every input, or use query(observed, "
                "init=...) to infer from other nodes"
            )
        return query(learner, inputs, T=T)
    x = learner.prepare_states(inputs, clamp)
    with torch.no_grad():
        ForwardInit().init(x, learner.context(clamp, train=False))
    return {n.name: net.view(x, n.name).clone() for n in net.nodes if n.name not in clamp}


def reconstruct(
    learner: PCLearner, observed: Mapping[str, torch.Tensor], *, T: int | None = None
) -> dict[str, torch.Tensor]:
    """Clamp the observations, infer the free nodes for T steps from the initializer, then
    predict the observations from the inferred roots (latents) by a forward sweep.

    Returns:
        name → the predicted value of each observed node, [B, *shape].
    """
    net = learner.net
    clamp = frozenset(observed)
    result = learner.infer(observed, clamp=clamp, T=T, train=False)
    x = result.states.clone()
    roots = frozenset(n.name for n in net.nodes if not n.parents and n.name not in clamp)
    order = [i for i, _ in forward_order(net, roots)]
    net.forward_sweep(x, order)
    return {name: net.view(x, name).clone() for name in observed}
