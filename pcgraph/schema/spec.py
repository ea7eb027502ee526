"""The graph schema: NodeSpec, EdgeSpec, GraphSpec — frozen, extra keys rejected, shapes checked."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from contextvars import ContextVar
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from pcgraph.energies import ENERGIES
from pcgraph.errors import SpecError
from pcgraph.names import ACTIVATION_NAMES
from pcgraph.ops import OPS, ShapeMismatch
from pcgraph.schema.messages import format_validation_error
from pcgraph.schema.prior import PriorSpec, check_prior

__all__ = ["EdgeSpec", "GraphSpec", "NodeSpec", "Role", "format_validation_error"]

Role = Literal["input", "output", "latent"]
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_FROZEN = ConfigDict(frozen=True, extra="forbid")


def _shape_list(shape: tuple[int, ...]) -> str:
    return "[" + ",".join(str(n) for n in shape) + "]"


_Lines = dict[tuple[object, ...], int]
_VALIDATING: ContextVar[bool] = ContextVar("pcgraph_spec_validating", default=False)


class _Spec(BaseModel):
    """Constructing a spec directly (``NodeSpec(name=..., shape=...)``) raises the same one-line
    :class:`SpecError` as loading it from YAML, not pydantic's raw ValidationError."""

    def __init__(self, **data: Any) -> None:
        if _VALIDATING.get():  # inside another spec's validation: it reports with the location
            super().__init__(**data)
            return
        token = _VALIDATING.set(True)
        try:
            super().__init__(**data)
        except ValidationError as exc:
            where = data.get("name") or data.get("source") or ""
            label = f"{type(self).__name__}({where!r})" if where else type(self).__name__
            raise SpecError(f"{label}: {format_validation_error(exc, data)}") from None
        finally:
            _VALIDATING.reset(token)


class NodeSpec(_Spec):
    """A neuron group: a state tensor x_i of shape [B, *shape].

    Attributes:
        name: unique identifier (letters, digits, ``_ . -``; starts with a letter or ``_``).
        shape: an int (a vector of that size) or a tuple such as (1, 28, 28).
        role: ``input`` / ``output`` (clamped to data by the task clamp sets) or ``latent``.
        activation: σ_i, applied to x_i when it is sent along out-edges.
        energy: ``gaussian`` (½‖ε‖²), ``cross_entropy`` (CE(softmax(μ), x)), ``bernoulli``
            (BCE(σ(μ), x)), ``laplace`` (‖ε‖₁), ``huber``, any name of
            :data:`pcgraph.energies.ENERGIES`; only nodes with parents have energy.
        precision: w_i > 0, the weight of this node's energy; or ``learnable``: a gaussian node's
            w_i = exp(s_i) learned with the weights (s_i starts at 0), its energy
            ½ w ‖ε‖² − ½ N log w (N: the entries summed over), so that w cannot grow without
            bound (its optimum is the inverse mean squared error).
        prior: a root node's Gaussian prior ½ p ‖x − m‖² (:class:`PriorSpec`), or None.
    """

    model_config = _FROZEN

    name: str
    shape: tuple[int, ...]
    role: Role = "latent"
    activation: str = "identity"
    energy: str = "gaussian"
    precision: Annotated[float, Field(gt=0, allow_inf_nan=False)] | Literal["learnable"] = 1.0
    prior: PriorSpec | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(
                f"node name {v!r} is not a valid identifier: use letters, digits, '_', '.', '-' "
                "and start with a letter or '_'"
            )
        return v

    @field_validator("shape", mode="before")
    @classmethod
    def _check_shape(cls, v: Any) -> tuple[int, ...]:
        dims = (v,) if isinstance(v, int) and not isinstance(v, bool) else v
        if not isinstance(dims, (list, tuple)) or not dims:
            raise ValueError(f"shape must be a positive int or a list of them, got {v!r}")
        for d in dims:
            if not isinstance(d, int) or isinstance(d, bool) or d <= 0:
                raise ValueError(f"shape {list(dims)} has a non-positive or non-integer size {d!r}")
        return tuple(dims)

    @field_validator("precision", mode="before")
    @classmethod
    def _check_precision(cls, v: Any) -> Any:
        if v == "learnable":
            return v
        if isinstance(v, bool) or not isinstance(v, int | float):  # YAML true would be 1.0
            raise ValueError(f"precision must be a positive number or 'learnable', got {v!r}")
        if not (0 < v < math.inf):
            raise ValueError(f"precision must be a positive finite number or 'learnable', got {v}")
        return float(v)

    @field_validator("activation")
    @classmethod
    def _check_activation(cls, v: str) -> str:
        return ACTIVATION_NAMES.canonical(v)

    @field_validator("energy", mode="before")
    @classmethod
    def _check_energy(cls, v: Any) -> Any:
        # the registry's names and aliases (mse, ce, xent, …) → the canonical name
        return ENERGIES.canonical(v) if isinstance(v, str) else v

    @property
    def size(self) -> int:
        """Number of values per sample, ∏ shape."""
        return math.prod(self.shape)


class EdgeSpec(_Spec):
    """A directed edge source→target carrying a transformation f (an op with parameters).

    Attributes:
        source: the sending node's name.
        target: the receiving node's name.
        op: a name from :data:`pcgraph.ops.OPS` (linear, dense, conv2d, conv_transpose2d, …).
        params: the op's parameters (e.g. kernel_size, stride); defaults are filled in.
        bias: whether f has a bias; defaults to True for learnable ops, False otherwise.
    """

    model_config = _FROZEN

    source: str
    target: str
    op: str = "linear"
    params: dict[str, Any] = Field(default_factory=dict)
    bias: bool = True

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        label = f"edge {data.get('source', '?')}→{data.get('target', '?')}: "
        op = OPS.get(data.get("op", "linear"), where=label)
        data["op"] = op.name
        raw = data.get("params") or {}
        if not isinstance(raw, dict):
            raise ValueError(f"params must be a mapping of {op.name} parameters, got {raw!r}")
        try:
            parsed = op.parse_params(raw)
        except ValidationError as exc:
            valid = ", ".join(op.params_model.model_fields) or "none"
            raise ValueError(
                f"invalid {op.name} parameters: {format_validation_error(exc)} "
                f"(valid parameters: {valid})"
            ) from None
        data["params"] = parsed.model_dump()
        if not op.takes_bias:  # a module: its own bias, if any, is inside it
            if data.get("bias"):
                raise ValueError(
                    f"op {op.name} is a whole module, so pcgraph adds no bias; put the bias "
                    "inside the module and drop 'bias'"
                )
            data["bias"] = False
        elif data.get("bias") is None:
            data["bias"] = op.learnable
        elif data["bias"] and not op.learnable:
            raise ValueError(f"{op.name} has no parameters, so it cannot have a bias; drop 'bias'")
        return data

    @property
    def key(self) -> tuple[str, str]:
        """(source, target)."""
        return (self.source, self.target)

    @property
    def label(self) -> str:
        """``source→target``."""
        return f"{self.source}→{self.target}"

    def describe(self) -> str:
        """The op with its parameters, e.g. ``conv2d k=3 s=2``."""
        op = OPS.get(self.op)
        return op.describe(op.parse_params(self.params))


class GraphSpec(_Spec):
    """A whole predictive coding network: nodes, edges, and free-form metadata.

    Validation checks names, references, self-loops, duplicate edges, and every edge's shape
    (the op applied to the source's shape must produce the target's shape). Edges are kept in a
    canonical order (by source, then target, in node order) so that parameter initialization is
    reproducible whatever order a file lists them in.
    """

    model_config = _FROZEN

    name: str = "graph"
    description: str = ""
    nodes: tuple[NodeSpec, ...]
    edges: tuple[EdgeSpec, ...] = ()
    metadata: dict[str, Any] = Field(default_factory=dict)
    _by_name: dict[str, NodeSpec] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _check_graph(self) -> GraphSpec:
        if not self.nodes:
            raise ValueError("the graph has no nodes; add at least one entry under 'nodes'")
        index: dict[str, int] = {}
        for i, node in enumerate(self.nodes):
            if node.name in index:
                raise ValueError(
                    f"node {node.name!r} is declared twice (nodes[{index[node.name]}] "
                    f"and nodes[{i}]); rename one of them"
                )
            index[node.name] = i
        self._by_name = {n.name: n for n in self.nodes}
        seen: set[tuple[str, str]] = set()
        for edge in self.edges:
            for end in ("source", "target"):
                name = getattr(edge, end)
                if name not in index:
                    raise ValueError(
                        f"edge {edge.label}: {end} {name!r} is not a node; declare it under "
                        f"'nodes' (known nodes: {', '.join(index)})"
                    )
            if edge.source == edge.target:
                raise ValueError(
                    f"edge {edge.label} is a self-loop, which pcgraph does not allow: x_i would "
                    "predict itself. Route the recurrence through a second node "
                    f"({edge.source}→{edge.source}_prev→{edge.source})"
                )
            if edge.key in seen:
                raise ValueError(
                    f"edge {edge.label} is declared twice; keep one (a node pair "
                    "carries one transformation)"
                )
            seen.add(edge.key)
            self._check_edge_shape(edge)
        has_parent = {e.target for e in self.edges}
        for node in self.nodes:
            check_prior(node.name, node.prior, node.name in has_parent, node.energy, node.precision)
            if node.role == "output" and node.name not in has_parent:
                raise ValueError(
                    f"output node {node.name!r} has no incoming edge, so nothing predicts it; add "
                    f"an edge into {node.name!r} or give it role 'input'/'latent'"
                )
            energy = ENERGIES.get(node.energy)
            if node.precision == "learnable" and (
                node.name not in has_parent or node.energy != "gaussian"
            ):
                raise ValueError(
                    f"node {node.name!r}: a learnable precision weighs a gaussian prediction "
                    f"error, and {node.name!r} "
                    + (
                        "has no incoming edge"
                        if node.name not in has_parent
                        else f"uses {node.energy} energy, where a precision has no meaning"
                    )
                    + "; set a number, or make it a predicted gaussian node"
                )
            if energy.held and node.name not in has_parent:
                raise ValueError(
                    f"node {node.name!r} uses {node.energy} energy but has no "
                    "incoming edge; only predicted nodes have energy"
                )
            if energy.needs_vector and len(node.shape) != 1:
                raise ValueError(
                    f"node {node.name!r} uses {node.energy} energy but has shape "
                    f"{list(node.shape)}; {node.energy} needs a vector of classes"
                )
        order = sorted(self.edges, key=lambda e: (index[e.source], index[e.target]))
        object.__setattr__(self, "edges", tuple(order))
        return self

    def _check_edge_shape(self, edge: EdgeSpec) -> None:
        src, dst = self.node(edge.source), self.node(edge.target)
        op = OPS.get(edge.op)
        desc = edge.describe()
        try:
            produced = op.output_shape(src.shape, dst.shape, op.parse_params(edge.params))
        except ShapeMismatch as exc:
            raise ValueError(f"edge {edge.label} ({desc}): {exc}") from None
        if tuple(produced) != dst.shape:
            raise ValueError(
                f"edge {edge.label} ({desc}): produces {_shape_list(produced)} but node "
                f"{dst.name} has shape {_shape_list(dst.shape)}"
            )

    # --- lookup ---------------------------------------------------------------------------
    def node(self, name: str) -> NodeSpec:
        """The node called ``name``; raises SpecError naming the known nodes if absent."""
        node = self._by_name.get(name)
        if node is not None:
            return node
        raise SpecError(f"no node named {name!r}; known nodes: {', '.join(self.node_names)}")

    @property
    def node_names(self) -> list[str]:
        """Node names in declaration order."""
        return [n.name for n in self.nodes]

    def names_with_role(self, role: Role) -> list[str]:
        """Names of the nodes with ``role``, in declaration order."""
        return [n.name for n in self.nodes if n.role == role]

    def parents(self, name: str) -> list[str]:
        """Sources of the edges into ``name``."""
        return [e.source for e in self.edges if e.target == name]

    def children(self, name: str) -> list[str]:
        """Targets of the edges out of ``name``."""
        return [e.target for e in self.edges if e.source == name]

    # --- construction and I/O -------------------------------------------------------------
    @classmethod
    def from_dict(
        cls,
        data: dict[str, Any],
        *,
        source: str = "graph",
        lines: _Lines | Callable[[], _Lines] | None = None,
    ) -> GraphSpec:
        """Validate a plain mapping; any problem raises one :class:`SpecError`.

        ``lines`` (path → line, from :func:`pcgraph.yamlio.load_yaml`, or a function that
        returns them, called only on an error) adds the line of the offending value to each
        message.
        """
        if not isinstance(data, dict):
            raise SpecError(
                f"{source}: the top level must be a mapping with 'nodes' and 'edges', "
                f"got {type(data).__name__}"
            )
        token = _VALIDATING.set(True)  # report here, with the source and the lines
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            found = lines() if callable(lines) else lines
            raise SpecError(f"{source}: {format_validation_error(exc, data, found)}") from None
        finally:
            _VALIDATING.reset(token)

    @classmethod
    def from_yaml(cls, path_or_text: str | Any) -> GraphSpec:
        """Load from a YAML file path or YAML text."""
        from pcgraph.schema.io import spec_from_yaml

        return spec_from_yaml(path_or_text)

    def to_yaml(self, path: str | Any | None = None) -> str:
        """YAML text of this spec (written atomically to ``path`` when given)."""
        from pcgraph.schema.io import spec_to_yaml

        return spec_to_yaml(self, path)

    @classmethod
    def from_networkx(cls, graph: Any) -> GraphSpec:
        """Build from a ``networkx.DiGraph`` whose node/edge attributes hold the spec fields."""
        from pcgraph.schema.io import spec_from_networkx

        return spec_from_networkx(graph)

    def to_networkx(self) -> Any:
        """A ``networkx.DiGraph`` with every field as node/edge/graph attributes."""
        from pcgraph.schema.io import spec_to_networkx

        return spec_to_networkx(self)
