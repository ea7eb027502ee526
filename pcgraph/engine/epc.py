"""Error-based predictive coding (ePC; Goemaere et al., 2025, arXiv 2505.20137).

Standard (state-based) PC descends the energy E(x) in the states x. ePC writes the states as a
function of the errors instead: for the free nodes in topological order,

    x_i = μ_i(x) + ε_i      (a free node with parents and an energy that is not held),
    x_i = mean(μ_i(x))      (a free node whose energy is held: cross-entropy, Bernoulli),
    x_i = r_i               (a free root: its state is its own variable),

with the clamped nodes at their data, and descends F(ε, r) = E(x(ε, r)) in the errors. A step
moves every error by the gradient of the whole sweep (one forward and one backward pass through
the graph), so a signal from the outputs reaches every layer in one step instead of one layer
per step; the price is 2·depth sequential products per step instead of 2.

Facts the tests check (tests/test_epc.py):

- the map ε ↦ x is a bijection for fixed weights (triangular with identity blocks on the
  diagonal), so ∂F/∂ε = 0 exactly where ∂E/∂x = 0: ePC and PC have the same fixed points;
- the weight gradient is ∇_θ F at fixed ε (through the sweep). At ε = 0 (T = 0 from forward
  initialization) the states are the forward pass and F is the output loss alone, so the
  gradient is backprop's exactly; at a fixed point ∂E/∂x = 0 and it equals PC's local gradient
  ∂E/∂θ at fixed x.

The graph must be a DAG under the clamp set's sweep (:func:`check_epc`): on a cycle the states
are not a function of the errors by one sweep.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import networkx as nx
import torch

from pcgraph.analysis.cost import longest_chain
from pcgraph.energies import get_energy
from pcgraph.errors import ConfigError

if TYPE_CHECKING:
    from pcgraph.compiler.network import PCNetwork

__all__ = [
    "ALGORITHMS",
    "EPCResult",
    "check_epc",
    "epc_infer",
    "epc_order",
    "epc_step_smm",
    "epc_update",
]

ALGORITHMS = ("pc", "epc")
SOLVERS = ("sgd", "euler", "momentum", "adam")


def check_epc(net: PCNetwork, neuron_optimizer: str) -> None:
    """Refuse what ePC cannot run: a graph with a cycle, a neuron solver it has no form for.

    Raises:
        ConfigError: naming the cycle or the solver, and the fix.
    """
    graph = nx.DiGraph(net.graph)
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        cycle = None
    if cycle:
        path = " → ".join([str(u) for u, _ in cycle] + [str(cycle[0][0])])
        raise ConfigError(
            f"algorithm='epc' needs a DAG: its states are a function of the errors by one "
            f"sweep in topological order, and graph {net.spec.name!r} has the cycle {path}. "
            "Use algorithm='pc' (standard PC runs on any graph)"
        )
    if neuron_optimizer not in SOLVERS:
        raise ConfigError(
            f"algorithm='epc' steps the errors with sgd (= euler), momentum or adam, not "
            f"neuron_optimizer={neuron_optimizer!r}"
        )


@dataclass
class EPCResult:
    """What :func:`epc_infer` returns (the attributes :class:`InferenceResult` has that a
    caller reads): the final states (the buffer passed in), the energy before and after, the
    per-node energies at the end, the trace and the steps run."""

    states: torch.Tensor
    energy_before: torch.Tensor
    energy_after: torch.Tensor
    node_energies: torch.Tensor
    trace: torch.Tensor | None
    errors: dict[int, torch.Tensor]
    clamp: frozenset[str]
    steps: int


def epc_order(net: PCNetwork) -> list[int]:
    """Every node in topological order (the clamped ones too: their energies are in F); a
    learner computes it once."""
    return [net.node_index[n] for n in nx.topological_sort(nx.DiGraph(net.graph))]


def _pass(
    net: PCNetwork,
    x: torch.Tensor,
    errors: dict[int, torch.Tensor],
    order: list[int],
    clamp: frozenset[str],
) -> tuple[torch.Tensor, torch.Tensor, dict[int, torch.Tensor]]:
    """One sweep: the states x(ε, r) per node and the node energies, in one pass (each
    activation and prediction computed once). Returns F (the energy whose gradient inference
    and learning descend), the per-node energies [N] and the states by node index.

    A free node whose energy is held sits at mean(μ), where its error signal is 0 by the
    engine's convention; its energy is reported but left out of F, as standard PC sends no
    message from it (for a cross-entropy node F would otherwise include the output's entropy).
    """
    b = x.shape[0]
    values: dict[int, torch.Tensor] = {}
    sent: dict[int, torch.Tensor] = {}
    zero = x.new_zeros(())
    node_e = [zero] * len(net.nodes)
    total = zero
    for i in order:
        node = net.nodes[i]
        mu = None
        for e in node.parents:
            src = net.edges[e].source
            s = sent.get(src)
            if s is None:
                v = values[src].reshape(b, *net.nodes[src].shape)
                act = net.nodes[src].activation
                s = sent[src] = v if act.is_identity else act.fn(v)
            out = net.kernels[e](s)
            mu = out if mu is None else mu + out
        held = False
        if node.name in clamp:
            value = x[:, node.cols]
        elif mu is None:
            value = errors[i]
        else:
            energy = get_energy(node.energy)
            held = energy.held
            flat = (energy.mean(mu) if held else mu).reshape(b, node.size)
            value = flat if held else flat + errors[i]
        values[i] = value
        if mu is None and node.prior_mean is not None:  # a root's prior: μ = m, w = p
            mu = x.new_full((b, *node.shape), node.prior_mean)
        if mu is not None:
            e_i = net.node_energy_of(i, value.reshape(b, *node.shape), mu)
            node_e[i] = e_i
            if not held:
                total = total + e_i
    return total, torch.stack(node_e), values


def _write(net: PCNetwork, x: torch.Tensor, values: dict[int, torch.Tensor]) -> None:
    with torch.no_grad():
        for i, v in values.items():
            x[:, net.nodes[i].cols] = v


def _variables(
    net: PCNetwork, x: torch.Tensor, order: list[int], clamp: frozenset[str]
) -> dict[int, torch.Tensor]:
    """ε_i = x_i − μ_i(x) for the free nodes with parents (not held), x_i for the free roots:
    the errors of the initialized state, so that the sweep reproduces it."""
    errors = {}
    with torch.no_grad():
        for i in order:
            node = net.nodes[i]
            if node.name in clamp:
                continue
            if node.parents:
                if get_energy(node.energy).held:
                    continue
                mu = net.prediction(x, i).reshape(x.shape[0], node.size)
                errors[i] = x[:, node.cols] - mu
            else:
                errors[i] = x[:, node.cols].clone()
    return errors


def epc_infer(
    net: PCNetwork,
    x: torch.Tensor,
    clamp: frozenset[str],
    T: int,
    *,
    order: list[int],
    lr: float,
    neuron_optimizer: str = "sgd",
    trace: bool = False,
) -> EPCResult:
    """T steps of ``neuron_optimizer`` with step ``lr`` on F(ε, r) = E(x(ε, r)) from the
    errors of the initialized states ``x`` (``order``: :func:`epc_order`); the final states
    are written into ``x``."""
    errors = _variables(net, x, order, clamp)
    variables = [v.requires_grad_(True) for v in errors.values()]
    if neuron_optimizer == "adam":
        opt: torch.optim.Optimizer | None = torch.optim.Adam(variables, lr=lr)
    elif neuron_optimizer == "momentum":
        opt = torch.optim.SGD(variables, lr=lr, momentum=0.9)
    else:
        opt = None
    rows = []
    with torch.enable_grad():
        total, node_e, values = _pass(net, x, errors, order, clamp)
        before = node_e.sum().detach()
        for _ in range(T):
            if trace:
                rows.append(node_e.detach())
            if variables and total.requires_grad:
                grads = torch.autograd.grad(total, variables, allow_unused=True)
                with torch.no_grad():
                    if opt is None:
                        for v, g in zip(variables, grads, strict=True):
                            if g is not None:
                                v.sub_(g, alpha=lr)
                    else:
                        for v, g in zip(variables, grads, strict=True):
                            v.grad = g
                        opt.step()
            total, node_e, values = _pass(net, x, errors, order, clamp)
    if trace:
        rows.append(node_e.detach())
    _write(net, x, values)
    return EPCResult(
        states=x,
        energy_before=before,
        energy_after=node_e.sum().detach(),
        node_energies=node_e.detach(),
        trace=torch.stack(rows) if trace else None,
        errors={i: v.detach() for i, v in errors.items()},
        clamp=clamp,
        steps=T,
    )


def epc_update(
    net: PCNetwork, result: EPCResult, order: list[int], opt: torch.optim.Optimizer
) -> None:
    """One weight step on ∇_θ F(ε, r) at the final errors, through the sweep."""
    params = [p for p in net.parameters() if p.requires_grad]
    with torch.enable_grad():
        total, _, _ = _pass(net, result.states, result.errors, order, result.clamp)
        grads = torch.autograd.grad(total, params, allow_unused=True)
    opt.zero_grad(set_to_none=True)
    for p, g in zip(params, grads, strict=True):
        p.grad = g
    opt.step()


def epc_step_smm(net: PCNetwork, per_pass: int) -> int:
    """Sequential products of one ePC step: the sweep through the longest path of the graph
    and back (2 · its edges · the deepest op's products)."""
    return 2 * max(longest_chain(net.graph) or 1, 1) * per_pass
