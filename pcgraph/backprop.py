"""The backprop twin of a PC network: the feed-forward network its graph computes once the inputs
are clamped, with a copy of its weights, for training with plain backpropagation.

Where Proposition 3.2 holds (a DAG whose roots are all clamped), a forward sweep from the
clamped nodes sets every free node to its prediction, x_i = μ_i = Σ_j f_ji(σ_j(x_j)). The twin
computes exactly that sweep as an ``nn.Module``, through the same edge kernels (copied, so that
training one leaves the other alone), for any topology: chains, skips, branches, convolutions.
It is the baseline the examples and benchmarks train next to PC from the same initial weights.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn

from pcgraph.analysis import check_forward_init
from pcgraph.compiler.network import PCNetwork
from pcgraph.compiler.plan import forward_order
from pcgraph.errors import ClampError

__all__ = ["BackpropTwin"]


class BackpropTwin(nn.Module):
    """h_i = Σ_{j→i} f_ji(σ_j(h_j)) in topological order from the inputs, with copies of
    ``net``'s kernels.

    Args:
        net: a compiled PC network.
        inputs: the nodes fed with data (default: the nodes of role ``input``); every root must
            be among them and the graph must be a DAG (Proposition 3.2).

    Calling it with a tensor (one input node) or a ``{name: tensor}`` mapping returns the
    prediction μ of the output node (one output) or ``{name: μ}`` of every output node. μ is
    the pre-activation of the output: the logits of a cross-entropy node, whose PC state is
    softmax(μ), and the mean of a gaussian one.
    """

    def __init__(self, net: PCNetwork, inputs: list[str] | None = None) -> None:
        super().__init__()
        spec = net.spec
        names = list(inputs) if inputs is not None else spec.names_with_role("input")
        ok, reason = check_forward_init(net.graph, set(names))
        if not ok:
            raise ClampError(
                f"{spec.name!r} has no backprop twin from inputs {names}: {reason}; a twin "
                "needs a DAG whose roots are all inputs (Proposition 3.2)"
            )
        self.inputs = names
        self.outputs = spec.names_with_role("output") or [spec.nodes[-1].name]
        self.kernels = nn.ModuleList(copy.deepcopy(k) for k in net.kernels)
        nodes = net.nodes
        self._order = [i for i, _ in forward_order(net, frozenset(names))]
        self._names = [n.name for n in nodes]
        self._shapes = [n.shape for n in nodes]
        self._acts = [None if n.activation.is_identity else n.activation.fn for n in nodes]
        self._parents = [[(e, net.edges[e].source) for e in n.parents] for n in nodes]
        missing = [o for o in self.outputs if net.node_index[o] not in set(self._order)]
        if missing:
            raise ClampError(f"outputs {missing} are not reached from the inputs {names}")
        self.to(net.device, net.dtype)

    def forward(
        self, data: torch.Tensor | Mapping[str, torch.Tensor]
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        if isinstance(data, torch.Tensor):
            if len(self.inputs) != 1:
                raise ClampError(f"pass a mapping for the inputs {self.inputs}, not one tensor")
            data = {self.inputs[0]: data}
        unknown = sorted(set(data) - set(self.inputs))
        if unknown:
            raise ClampError(f"{unknown} are not inputs of this twin; its inputs: {self.inputs}")
        h: dict[int, torch.Tensor] = {}
        sent: dict[int, torch.Tensor] = {}
        for name, value in data.items():
            i = self._names.index(name)
            h[i] = value.reshape(value.shape[0], *self._shapes[i])
        for i in self._order:
            mu = None
            for e, j in self._parents[i]:
                if j not in sent:
                    act = self._acts[j]
                    sent[j] = h[j] if act is None else act(h[j])
                out = self.kernels[e](sent[j])
                mu = out if mu is None else mu + out
            assert mu is not None  # forward_order reaches i only through its parents
            h[i] = mu
        outs = {o: h[self._names.index(o)] for o in self.outputs}
        return outs[self.outputs[0]] if len(outs) == 1 else outs
