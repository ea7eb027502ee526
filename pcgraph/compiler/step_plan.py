"""The static half of an inference program: what each step of one clamp set does, decided
once from the graph and the kernels (:class:`StepPlan`);
:class:`~pcgraph.compiler.program.InferenceProgram` adds the buffers and runs it."""

from __future__ import annotations

import itertools

import torch

from pcgraph.compiler.network import PCNetwork
from pcgraph.compiler.plan import clamp_plan
from pcgraph.compiler.recipes import ErrorRecipe, GradRecipe
from pcgraph.compiler.stacking import EdgeStack, build_stacks
from pcgraph.energies import LEARNED_GAUSSIAN, get_energy, is_gaussian
from pcgraph.ops.kernel import EdgeKernel
from pcgraph.ops.linear_kernel import LinearKernel

__all__ = ["StepPlan"]


class StepPlan:
    """The per-step plans of the local-gradient inference step for one clamp set: which edges
    carry fixed and which changing predictions, which nodes send σ(x), and plain lists of
    (index, kernels) that the hot loop walks. Built once; read by the program."""

    def __init__(self, net: PCNetwork, clamp: frozenset[str]) -> None:
        self.net = net
        self.clamp = clamp
        nodes = net.nodes
        plan = clamp_plan(net, clamp)  # free nodes and columns come from the clamp plan
        self.free_nodes = list(plan.free)
        is_free = [False] * len(nodes)
        for i in self.free_nodes:
            is_free[i] = True
        # the nodes with an energy: predicted by parents, or a root's prior (μ = m, fixed)
        self.predicted = [n.index for n in nodes if n.has_energy]
        # edges split by whether their source changes during inference
        self.var_parents = {
            i: [e for e in nodes[i].parents if is_free[net.edges[e].source]] for i in self.predicted
        }
        self.const_parents = {
            i: [e for e in nodes[i].parents if not is_free[net.edges[e].source]]
            for i in self.predicted
        }
        self.sent_free = sorted(
            {net.edges[e].source for i in self.predicted for e in self.var_parents[i]}
        )
        self.sent_clamped = sorted(
            {net.edges[e].source for e in range(len(net.edges)) if not is_free[net.edges[e].source]}
        )
        # the edges that read each clamped sender's σ(x), fixed during inference
        self.clamped_out = {
            j: [e.index for e in net.edges if e.source == j] for j in self.sent_clamped
        }
        # a learned precision's energy has a log term: asked of its Energy, as any non-gaussian
        self.energy_of = [LEARNED_GAUSSIAN if n.learned else get_energy(n.energy) for n in nodes]
        self.learned = [n.index for n in nodes if n.learned]
        # The closed forms of the step (ε = x − μ, E = ½ w ‖ε‖², x = μ after a sweep) are the
        # gaussian energy's. Every other energy (cross-entropy, Bernoulli, a user's) takes the
        # core path: μ computed, then ε and E asked of its Energy object.
        self.custom_nodes = [i for i in self.predicted if not is_gaussian(self.energy_of[i])]
        # A free node of a held energy is held at its mean (softmax(μ), σ(μ): the minimiser of
        # KL(x‖mean)): the energy is linear in x, so gradient steps would leave the domain and
        # never stop.
        self.free_ce = {i for i in self.custom_nodes if is_free[i] and self.energy_of[i].held}
        self.unit_precision = all(n.precision == 1.0 and not n.learned for n in nodes)
        precision = torch.ones(net.state_size, device=net.device, dtype=net.dtype)
        col_node = torch.empty(net.state_size, dtype=torch.long, device=net.device)
        for n in nodes:
            precision[n.cols] = n.precision
            col_node[n.cols] = n.index
        self.precision, self.col_node = precision, col_node
        self.free_mask = plan.free_cols.to(net.dtype)
        # the free columns as one range when they are contiguous (the usual layout): the state
        # update then touches only them, not the clamped data's columns
        spans = sorted((nodes[i].offset, nodes[i].offset + nodes[i].size) for i in self.free_nodes)
        contiguous = all(a[1] == b[0] for a, b in itertools.pairwise(spans))
        self.free_range: tuple[int, int] | None = (
            (spans[0][0], spans[-1][1]) if spans and contiguous else None
        )
        kernels = net.kernels
        self.learnable_edges = [
            e.index
            for e in net.edges
            if e.index < len(kernels) and any(True for _ in kernels[e.index].parameters())
        ]
        self.gauss_nodes: list[int] = []
        self.gauss_plans: dict[frozenset[int], tuple[list[int], torch.Tensor, torch.Tensor]] = {}
        self.per_node_energy = False
        self.stacks: list[EdgeStack] = []
        self.stacked_edges: set[int] = set()
        self.sweepable: set[int] = set()
        self.bound_params: list[torch.Tensor] = []
        if len(net.kernels) == len(net.edges):
            self.build_plans()

    def build_plans(self) -> None:
        """Static per-step plans: plain lists of (index, bound methods) the hot loop walks."""
        net, nodes = self.net, self.net.nodes
        k = [self.kernel(e) for e in range(len(net.edges))]
        self.stacks = build_stacks(net, self.var_parents, k)
        self.stacked_edges = stacked = {e for st in self.stacks for e in st.edges}
        self.stacked_in = {net.edges[e].target for e in stacked}
        self.stacked_out = {net.edges[e].source for e in stacked}
        self.sent_plan = [
            (j, None if nodes[j].activation.is_identity else nodes[j].activation)
            for j in self.sent_free
        ]
        self.err_plan = [
            ErrorRecipe(
                node=i,
                parents=tuple(
                    (k[e], net.edges[e].source) for e in self.var_parents[i] if e not in stacked
                ),
                custom=i in self.custom_nodes,
                stacked_in=i in self.stacked_in,
            )
            for i in self.predicted
        ]
        self.grad_plan = [
            GradRecipe(
                node=j,
                has_own=nodes[j].has_energy and j not in self.free_ce,
                children=tuple(
                    (k[e], net.edges[e].target) for e in nodes[j].children if e not in stacked
                ),
                activation=None if nodes[j].activation.is_identity else nodes[j].activation,
                stacked_out=j in self.stacked_out,
                fresh=self.fresh_message(j, k),
            )
            for j in self.free_nodes
        ]
        self.hold_plan = [
            (i, [(k[e].forward, net.edges[e].source) for e in self.var_parents[i]])
            for i in clamp_plan(net, self.clamp).hold_order
        ]
        self.sent_fn = dict(self.sent_plan)
        # nodes whose prediction / message is one plain linear edge: specialised closures
        self.single_parent = {
            r.node: r.parents[0][0]
            for r in self.err_plan
            if not r.custom
            and not r.stacked_in
            and not self.const_parents[r.node]
            and len(r.parents) == 1
            and isinstance(r.parents[0][0], LinearKernel)
            and r.parents[0][0].plain
        }
        fresh = [r.children[0][0] for r in self.grad_plan if r.fresh]
        # the first clamped parent's plain linear edge: the fixed prediction's one product
        fixed = [k[self.const_parents[i][0]] for i in self.predicted if self.const_parents[i]]
        fixed = [kern for kern in fixed if isinstance(kern, LinearKernel) and kern.plain]
        bound = {id(k): k for k in (*self.single_parent.values(), *fresh, *fixed)}
        self.bound_params = [p for kern in bound.values() for p in kern.parameters()]
        # gaussian nodes a forward sweep may leave at ε = 0 (it sets x_i = μ_i exactly)
        self.gauss_nodes = [i for i in self.predicted if i not in self.custom_nodes]
        self.sweepable = {i for i in self.free_nodes if nodes[i].parents}.intersection(
            self.gauss_nodes
        )
        self.per_node_energy = len(self.gauss_nodes) <= 16

    def fresh_message(self, j: int, k: list[EdgeKernel]) -> bool:
        """Whether node j's whole message is one linear edge's δ W, a new tensor that σ' and
        the subtraction can work on in place (no copy into the gradient's strided view)."""
        net, stacked = self.net, self.stacked_edges
        children = [e for e in net.nodes[j].children if e not in stacked]
        if len(children) != 1 or j in self.stacked_out:
            return False
        kern = k[children[0]]
        return isinstance(kern, LinearKernel) and kern.plain

    def kernel(self, e: int) -> EdgeKernel:
        kernel = self.net.kernels[e]
        assert isinstance(kernel, EdgeKernel)
        return kernel

    def gauss_plan(self, zero: frozenset[int]) -> tuple[list[int], torch.Tensor, torch.Tensor]:
        """The gaussian nodes whose energy is computed (all but ``zero``), their indices and
        ½ w, cached per ``zero`` set (there are two: none, and a forward sweep's)."""
        plan = self.gauss_plans.get(zero)
        if plan is None:
            nodes = [i for i in self.gauss_nodes if i not in zero]
            dev, dt = self.net.device, self.net.dtype
            plan = (
                nodes,
                torch.tensor(nodes, dtype=torch.long, device=dev),
                torch.tensor(
                    [0.5 * self.net.nodes[i].precision for i in nodes], device=dev, dtype=dt
                ),
            )
            self.gauss_plans[zero] = plan
        return plan
