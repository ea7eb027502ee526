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

__all__ = [
    "STATELESS_SOLVERS",
    "along_one_run",
    "predict",
    "query",
    "reconstruct",
    "reconstruct_along",
]


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
    clamp = frozenset(observed)
    result = learner.infer(observed, clamp=clamp, T=T, train=False)
    return _predicted(learner, result.states, observed)


def _predicted(
    learner: PCLearner, states: torch.Tensor, observed: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The observed (clamped) nodes predicted from the free roots of ``states`` by a forward
    sweep, on a copy of the states."""
    net, clamp = learner.net, frozenset(observed)
    x = states.clone()
    roots = frozenset(n.name for n in net.nodes if not n.parents and n.name not in clamp)
    net.forward_sweep(x, [i for i, _ in forward_order(net, roots)])
    return {name: net.view(x, name).clone() for name in observed}


# neuron solvers whose step reads nothing but the states (Heun's state lives within one step)
STATELESS_SOLVERS = frozenset({"sgd", "euler", "heun"})


def along_one_run(learner: PCLearner) -> bool:
    """Whether inference for T' > T steps passes through the states after T steps: plain PC
    with a stateless solver, the fixed step rule and no early stop (gradient descent with a
    fixed step is a Markov chain on the states; momentum, Adam, backtracking, a tolerance and
    ePC's errors carry more)."""
    return (
        learner.algorithm == "pc"
        and learner.neuron_optimizer in STATELESS_SOLVERS
        and learner.step_rule == "fixed"
        and learner.tol is None
    )


def reconstruct_along(
    learner: PCLearner, observed: Mapping[str, torch.Tensor], Ts: list[int]
) -> dict[int, dict[str, torch.Tensor]]:
    """T → :func:`reconstruct` at T, for every T in ``Ts``: one inference run of max(Ts) steps
    read at each T on the way where :func:`along_one_run` holds (the same numbers as a run per
    T; a random init then draws one initial state for all of them), else one run per T."""
    Ts = sorted(set(Ts))
    if not along_one_run(learner):
        return {T: reconstruct(learner, observed, T=T) for T in Ts}
    clamp = frozenset(observed)
    states = learner.infer(observed, clamp=clamp, T=Ts[0], train=False).states.clone()
    out, done = {}, Ts[0]
    for T in Ts:
        if done < T:  # continue from the states after ``done`` steps, without a new init
            learner._solve(states, clamp, T - done, trace=False, sweep=None, tol=None)
            done = T
        out[T] = _predicted(learner, states, observed)
    return out
