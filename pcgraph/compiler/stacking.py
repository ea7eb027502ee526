"""Stacked edges: linear edges of one signature run as one batched matmul per group.

Linear edges with the same (in, out, bias) whose sources are free are grouped; each group's
predictions, messages and weight gradients are one ``torch.bmm`` each, scattered into [B, D]
buffers with one ``index_add_`` (targets' columns for μ, sources' columns for messages), so a
group costs O(1) kernels instead of O(edges). Graphs of many small same-shaped groups (the
``fully_connected_groups`` topology) are where this pays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from pcgraph.compiler.network import PCNetwork
from pcgraph.ops.kernel import EdgeKernel, store_grad
from pcgraph.ops.linear_kernel import LinearKernel

__all__ = ["STACK_MIN", "EdgeStack", "build_stacks"]

# Linear edges of one signature are stacked into one batched matmul when there are at least this
# many: below it, separate matmuls cost the same and avoid the gather/scatter copies.
STACK_MIN = 4


@dataclass
class EdgeStack:
    """One group of same-signature linear edges (see the module docstring)."""

    edges: list[int]
    kernels: list[LinearKernel]
    sources: list[int]
    targets: list[int]
    src_cols: torch.Tensor  # [G·in] flat-state columns of the sources, in group order
    tgt_cols: torch.Tensor  # [G·out]
    weight: torch.Tensor | None = None  # [G, out, in], restacked once per batch
    bias: torch.Tensor | None = None  # [G, 1, out]

    @torch.no_grad()
    def restack(self) -> None:
        """Stack the current weights (they change between batches, not during inference)."""
        self.weight = torch.stack([kern.weight for kern in self.kernels])
        biases = [kern.bias for kern in self.kernels if kern.bias is not None]
        self.bias = torch.stack(biases)[:, None, :] if biases else None

    def add_predictions(self, sent: Mapping[int, torch.Tensor], mu: torch.Tensor) -> None:
        """mu[:, targets] += W σ(x_sources) + b for every edge of the group."""
        assert self.weight is not None
        s_in = torch.stack([sent[n] for n in self.sources])  # [G, B, in]
        out = torch.bmm(s_in, self.weight.transpose(1, 2))
        if self.bias is not None:
            out += self.bias
        mu.index_add_(1, self.tgt_cols, out.transpose(0, 1).reshape(mu.shape[0], -1))

    def add_messages(self, delta: Sequence[torch.Tensor], msg: torch.Tensor) -> None:
        """msg[:, sources] += δ_target W for every edge of the group."""
        assert self.weight is not None
        d = torch.stack([delta[n] for n in self.targets])  # [G, B, out]
        m = torch.bmm(d, self.weight)  # [G, B, in]
        msg.index_add_(1, self.src_cols, m.transpose(0, 1).reshape(msg.shape[0], -1))

    def param_grads(
        self, sent: Mapping[int, torch.Tensor], delta: Sequence[torch.Tensor], *, accumulate: bool
    ) -> None:
        """∂E/∂W = −δᵀ σ(x), ∂E/∂b = −Σ δ for the whole group in one bmm."""
        s_in = torch.stack([sent[n] for n in self.sources])  # [G, B, in]
        d = torch.stack([delta[n] for n in self.targets])  # [G, B, out]
        gw = -torch.bmm(d.transpose(1, 2), s_in)
        gb = -d.sum(1) if self.bias is not None else None
        for idx, lin in enumerate(self.kernels):
            grads = [gw[idx]] if gb is None else [gw[idx], gb[idx]]
            for p, grad in zip(lin.parameters(), grads, strict=True):
                store_grad(p, grad, accumulate=accumulate)


def build_stacks(
    net: PCNetwork,
    var_parents: Mapping[int, Sequence[int]],
    kernels: Sequence[EdgeKernel],
) -> list[EdgeStack]:
    """The groups of ≥ :data:`STACK_MIN` vector linear edges of one signature among the edges
    with free sources (``var_parents``: predicted node → such in-edges)."""
    groups: dict[tuple[int, int, bool], list[int]] = {}
    for edges in var_parents.values():
        for e in edges:
            kern = kernels[e]
            if isinstance(kern, LinearKernel) and kern.plain:
                key = (kern.in_shape[0], kern.out_shape[0], kern.bias is not None)
                groups.setdefault(key, []).append(e)

    def cols(nodes: list[int]) -> torch.Tensor:
        return torch.cat(
            [
                torch.arange(net.nodes[n].offset, net.nodes[n].offset + net.nodes[n].size)
                for n in nodes
            ]
        ).to(net.device)

    stacks = []
    for members in groups.values():
        if len(members) < STACK_MIN:
            continue
        linear = [kern for kern in (kernels[e] for e in members) if isinstance(kern, LinearKernel)]
        src = [net.edges[e].source for e in members]
        tgt = [net.edges[e].target for e in members]
        stacks.append(EdgeStack(members, linear, src, tgt, cols(src), cols(tgt)))
    return stacks
