"""``compile(spec)`` → :class:`PCNetwork`: parameters, a flat state layout, and reference math.

All node states of a batch live in one flat buffer ``x`` of shape [B, D] (D = Σ_i |x_i|); each
node is a view ``x[:, offset_i : offset_i + size_i]`` reshaped to [B, *shape_i]. A state update
of every node is therefore one kernel. The hot inference loop lives in
:class:`pcgraph.compiler.program.InferenceProgram`; this module holds the parameters and the
differentiable reference definitions (predictions, energy) used by the autograd path and tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import networkx as nx
import torch
from torch import nn

from pcgraph.activations import Activation, get_activation
from pcgraph.analysis import resolve_clamp
from pcgraph.energies import LEARNED_GAUSSIAN, get_energy, node_energy
from pcgraph.errors import ClampError, SpecError
from pcgraph.ops import get_op
from pcgraph.ops.base import KernelRequest
from pcgraph.ops.kernel import EdgeKernel
from pcgraph.schema import GraphSpec

__all__ = ["EdgeInfo", "NodeInfo", "PCNetwork"]


@dataclass(frozen=True)
class NodeInfo:
    """Where node i lives in the flat state and how it behaves."""

    index: int
    name: str
    shape: tuple[int, ...]
    offset: int
    size: int
    activation: Activation
    energy: str
    precision: float
    parents: tuple[int, ...]  # edge indices into the node
    children: tuple[int, ...]  # edge indices out of the node
    prior_mean: float | None = None  # a root's prior N(m, 1/precision): μ = m, w = precision
    learned: bool = False  # precision: learnable (w = exp(s), PCNetwork.log_precision)

    @property
    def has_energy(self) -> bool:
        """Whether the node has an energy: a prediction from parents, or a prior."""
        return bool(self.parents) or self.prior_mean is not None

    @property
    def cols(self) -> slice:
        """Column range of the node in the flat [B, D] buffer."""
        return slice(self.offset, self.offset + self.size)


@dataclass(frozen=True)
class EdgeInfo:
    """Edge e: source node, target node and its kernel's index."""

    index: int
    source: int
    target: int
    label: str
    learnable: bool


class PCNetwork(nn.Module):
    """A compiled predictive coding network: one kernel per edge plus the state layout.

    Build it with :func:`compile`. Parameters are the edges' kernels (``self.kernels``).

    Shapes:
        states: [B, D] flat, D = :attr:`state_size`; ``view(x, name)`` → [B, *shape].
    """

    kernels: nn.ModuleList
    backend: ClassVar[str] = "dense"  # its row of pcgraph.compiler.backends.BACKENDS

    def __init__(
        self,
        spec: GraphSpec,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        modules: Mapping[tuple[str, str], nn.Module] | None = None,
    ) -> None:
        reason = self.unsupported_reason(spec)
        if reason is not None:
            raise SpecError(
                f"cannot compile {spec.name!r} to the {self.backend} backend: {reason}; "
                "use backend='dense'"
            )
        super().__init__()
        self.spec = spec
        self.dtype = dtype or torch.get_default_dtype()
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        names = spec.node_names
        self.node_index = {n: i for i, n in enumerate(names)}
        self.edges: tuple[EdgeInfo, ...] = tuple(
            EdgeInfo(
                e,
                self.node_index[edge.source],
                self.node_index[edge.target],
                edge.label,
                get_op(edge.op).learnable,
            )
            for e, edge in enumerate(spec.edges)
        )
        self.kernels = nn.ModuleList(self._build_parameters(spec, dict(modules or {})))
        # the edge modules that draw something per minibatch (dropout's mask): asked by
        # new_batch, which is then free for every network without one
        modules_of = (getattr(k, "module", None) for k in self.kernels)
        self.per_batch: tuple[nn.Module, ...] = tuple(
            m for m in modules_of if isinstance(m, nn.Module) and hasattr(m, "new_batch")
        )
        edges = self.edges
        parents: dict[int, list[int]] = {i: [] for i in range(len(spec.nodes))}
        children: dict[int, list[int]] = {i: [] for i in range(len(spec.nodes))}
        for e in edges:
            parents[e.target].append(e.index)
            children[e.source].append(e.index)
        nodes, offset = [], 0
        for i, node in enumerate(spec.nodes):
            nodes.append(
                NodeInfo(
                    index=i,
                    name=node.name,
                    shape=node.shape,
                    offset=offset,
                    size=node.size,
                    activation=get_activation(node.activation),
                    energy=node.energy,
                    precision=(
                        node.prior.precision
                        if node.prior is not None
                        else 1.0
                        if node.precision == "learnable"
                        else node.precision
                    ),
                    parents=tuple(parents[i]),
                    children=tuple(children[i]),
                    prior_mean=None if node.prior is None else node.prior.mean,
                    learned=node.precision == "learnable",
                )
            )
            offset += node.size
        self.nodes: tuple[NodeInfo, ...] = tuple(nodes)
        # s_i = log w_i of the nodes with a learned precision, trained with the weights
        self.log_precision = nn.ParameterDict(
            {
                f"n{n.index}": nn.Parameter(torch.zeros((), dtype=self.dtype))
                for n in nodes
                if n.learned
            }
        )
        self.state_size = offset
        self._graph = spec.to_networkx()
        # the compiler's caches on this network (compiler.backends.program_for and
        # compiler.plan.clamp_plan fill them): clamp set → its program / its ClampPlan
        self.program_cache: dict[frozenset[str], Any] = {}
        self.plan_cache: dict[frozenset[str], Any] = {}
        self.to(self.device)

    @classmethod
    def unsupported_reason(cls, spec: GraphSpec) -> str | None:
        """Why this backend cannot compile ``spec``, or None (the dense backend takes all)."""
        return None

    def _build_parameters(
        self, spec: GraphSpec, modules: dict[tuple[str, str], nn.Module]
    ) -> list[EdgeKernel]:
        """The edges' parameters, as one kernel per edge (the ``kernels`` list), built on the
        CPU generator and moved later: the same seed gives the same network on every device.
        An edge with ``op: module`` takes its module from ``modules``; every module-carried
        edge is run once on a probe batch to check that it gives the target's shape."""
        from pcgraph.ops.module_kernel import ModuleKernel, check_module

        declared = {edge.key for edge in spec.edges if edge.op == "module"}
        unmatched = [key for key in modules if key not in declared]
        if unmatched:
            where = ", ".join(f"{s}→{t}" for s, t in unmatched)
            edges = ", ".join(f"{s}→{t}" for s, t in sorted(declared)) or "none"
            raise SpecError(
                f"modules given for {where}, but no edge with op: module joins those nodes "
                f"(edges with op: module: {edges}); declare each such edge with op: module in "
                "the spec, keyed (source, target)"
            )
        kernels = []
        for edge in spec.edges:
            op = get_op(edge.op)
            src, dst = spec.node(edge.source), spec.node(edge.target)
            params = op.parse_params(edge.params)
            if op.name == "module":
                module = modules.pop(edge.key, None)
                if module is None:
                    raise SpecError(
                        f"edge {edge.label} is declared with op: module; pass its module as "
                        f"compile(spec, modules={{{edge.key!r}: your_module}}) (from the command "
                        "line: register a factory with pcgraph.register_op in a --plugin file "
                        "and use op: <its name>)"
                    )
                if not isinstance(module, nn.Module):
                    raise SpecError(
                        f"modules[{edge.key!r}] is a {type(module).__name__}, not a "
                        "torch.nn.Module; pass the module itself (a factory goes to "
                        "pcgraph.register_op)"
                    )
                req = KernelRequest(src.shape, dst.shape, params, False, None, self.dtype)
                kernel: EdgeKernel = ModuleKernel(req, module)
            else:
                try:
                    kernel = op.make_kernel(
                        src.shape, dst.shape, params, bias=edge.bias, dtype=self.dtype
                    )
                except SpecError as exc:
                    raise SpecError(f"edge {edge.label}: {exc}") from exc
            if isinstance(kernel, ModuleKernel):
                check_module(kernel, edge.label, src.shape, dst.shape)
            kernels.append(kernel)
        return kernels

    # --- layout ---------------------------------------------------------------------------
    def node(self, name: str) -> NodeInfo:
        """Layout of node ``name``; unknown names raise a SpecError listing the nodes."""
        try:
            return self.nodes[self.node_index[name]]
        except KeyError:
            raise SpecError(
                f"no node named {name!r}; known nodes: {', '.join(self.node_index)}"
            ) from None

    @property
    def graph(self) -> nx.DiGraph:
        """The networkx form of the spec (for analysis)."""
        return self._graph

    def new_states(self, batch_size: int) -> torch.Tensor:
        """A zero state buffer [batch_size, D] on the network's device and dtype."""
        return torch.zeros(batch_size, self.state_size, device=self.device, dtype=self.dtype)

    def new_batch(self, *, train: bool, generator: torch.Generator | None) -> None:
        """Start a minibatch for the edges that draw per batch (``dropout``: a new mask from
        ``generator`` in training, the identity at evaluation)."""
        for module in self.per_batch:
            module.new_batch(train, generator)  # type: ignore[operator]

    def view(self, x: torch.Tensor, name: str) -> torch.Tensor:
        """Node ``name``'s state as a view [B, *shape] of the flat buffer ``x``."""
        node = self.node(name)
        return (
            x[:, node.cols].view(x.shape[0], *node.shape)
            if len(node.shape) > 1
            else x[:, node.cols]
        )

    def resolve_clamp(self, clamp: str | Iterable[str] | None) -> frozenset[str]:
        """A task name (train/predict/generate) or node names → the clamp set."""
        if isinstance(clamp, frozenset) and clamp in self.plan_cache:
            return clamp  # resolved before: the training loop passes it back every batch
        return resolve_clamp(self._graph, clamp)

    def write(self, x: torch.Tensor, values: Mapping[str, torch.Tensor]) -> None:
        """Copy ``values`` (name → [B, *shape] or [B, size]) into the flat buffer ``x``."""
        for name, value in values.items():
            node = self.node(name)
            value = torch.as_tensor(value, device=x.device, dtype=x.dtype)
            if value.shape[0] != x.shape[0] or value[0].numel() != node.size:
                raise ClampError(
                    f"data for node {name!r} has shape {list(value.shape)}; expected "
                    f"[{x.shape[0]}, {', '.join(map(str, node.shape))}] (batch first)"
                )
            x[:, node.cols] = value.reshape(x.shape[0], node.size)

    # --- reference math (autograd-friendly) -----------------------------------------------
    def sent(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """σ_i(x_i) shaped [B, *shape_i]."""
        node = self.nodes[i]
        v = x[:, node.cols].reshape(x.shape[0], *node.shape)
        return v if node.activation.is_identity else node.activation.fn(v)

    def prediction(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """μ_i = Σ_j f_ji(σ_j(x_j)) for a node with parents (a root's prior: its mean m),
        shaped [B, *shape_i]."""
        node = self.nodes[i]
        if node.prior_mean is not None:
            return x.new_full((x.shape[0], *node.shape), node.prior_mean)
        if not node.parents:
            raise SpecError(f"node {node.name!r} has no parents, so it has no prediction")
        mu = None
        for e in node.parents:
            out = self.kernels[e](self.sent(x, self.edges[e].source))
            mu = out if mu is None else mu + out
        assert mu is not None
        return mu

    def node_energies(self, x: torch.Tensor) -> torch.Tensor:
        """Per-node energy E_i summed over the batch, shape [N] (0 for roots without a prior).

        Differentiable with respect to ``x`` and the parameters: the autograd reference.
        """
        out = []
        for node in self.nodes:
            if not node.has_energy:
                out.append(torch.zeros((), device=x.device, dtype=x.dtype))
                continue
            state = x[:, node.cols].reshape(x.shape[0], *node.shape)
            out.append(self.node_energy_of(node.index, state, self.prediction(x, node.index)))
        return torch.stack(out)

    def precision_of(self, i: int) -> float | torch.Tensor:
        """Node i's precision w_i: its number, or exp(s_i) (a 0-d tensor in autograd) where it
        is learned."""
        node = self.nodes[i]
        return self.log_precision[f"n{i}"].exp() if node.learned else node.precision

    def precision(self, name: str) -> float:
        """Node ``name``'s current precision w as a number (a learned one: exp(s) now)."""
        with torch.no_grad():
            return float(self.precision_of(self.node_index[name]))

    def node_energy_of(self, i: int, state: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        """E_i at ``state`` [B, *shape] with prediction ``mu``, summed over the batch (with the
        log term of a learned precision); differentiable."""
        node = self.nodes[i]
        if node.learned:
            return LEARNED_GAUSSIAN.value(state, mu, self.precision_of(i))  # type: ignore[arg-type]
        return node_energy(node.energy, state, mu, node.precision)

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """Total energy E = Σ_i E_i (paper Eq. 1), summed over the batch."""
        return self.node_energies(x).sum()

    def forward_sweep(
        self,
        x: torch.Tensor,
        order: Iterable[int],
    ) -> None:
        """Set x_i = μ_i in place for the nodes in ``order`` (a topological order of free nodes
        whose parents are known): the forward initialization. A cross-entropy node gets
        softmax(μ_i), the state inference holds it at (its logits are μ_i)."""
        with torch.no_grad():
            for i in order:
                node = self.nodes[i]
                mu = self.prediction(x, i)
                energy = get_energy(node.energy)
                if energy.held:  # free here: held at its mean (softmax, sigmoid) by inference
                    mu = energy.mean(mu)
                x[:, node.cols] = mu.reshape(x.shape[0], node.size)

    def parameter_count(self) -> int:
        """Number of learnable scalars."""
        return sum(p.numel() for p in self.parameters())

    def extra_repr(self) -> str:
        return (
            f"spec={self.spec.name!r}, nodes={len(self.nodes)}, edges={len(self.edges)}, "
            f"state_size={self.state_size}, params={self.parameter_count()}"
        )
