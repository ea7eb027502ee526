"""Python builders for common topologies; they produce the same specs as the YAML files."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

from pcgraph.errors import SpecError
from pcgraph.limits import check_layers
from pcgraph.schema.spec import GraphSpec

__all__ = ["chain", "decoder", "mlp", "residual_mlp"]

ShapeLike = int | Sequence[int]


def chain(
    names: Sequence[str],
    shapes: Sequence[ShapeLike],
    *,
    roles: Sequence[str] | None = None,
    activation: str = "gelu",
    activations: Sequence[str] | None = None,
    op: str = "linear",
    bias: bool = True,
    last_energy: str = "gaussian",
    name: str = "chain",
    description: str = "",
    metadata: dict[str, Any] | None = None,
) -> GraphSpec:
    """A chain x_0 → x_1 → … → x_L with one ``op`` edge between consecutive nodes.

    Args:
        names: node names, in order along the chain.
        shapes: one shape per node.
        roles: one role per node (default: all latent).
        activation: σ for every node except an input first node and the last node (whose
            value is never sent); ``activations`` overrides it per node.
        op: the edge op between consecutive nodes.
        last_energy: energy of the last node (``gaussian`` or ``cross_entropy``).
    """
    if len(names) != len(shapes):
        raise SpecError(f"chain: {len(names)} names but {len(shapes)} shapes; give one each")
    if len(names) < 2:
        raise SpecError("chain: needs at least two nodes")
    roles = list(roles) if roles is not None else ["latent"] * len(names)
    if activations is not None:
        acts = list(activations)
    else:  # data nodes are sent as they are; hidden nodes through σ; the last node is never sent
        first = "identity" if roles[0] == "input" else activation
        acts = [first, *[activation] * (len(names) - 2), "identity"]
    nodes = []
    for i, (node, shape) in enumerate(zip(names, shapes, strict=True)):
        entry: dict[str, Any] = {
            "name": node,
            "shape": shape,
            "role": roles[i],
            "activation": acts[i],
        }
        if i == len(names) - 1:
            entry["energy"] = last_energy
        nodes.append(entry)
    edges = [
        {"source": a, "target": b, "op": op, "bias": bias} for a, b in itertools.pairwise(names)
    ]
    return GraphSpec.from_dict(
        {
            "name": name,
            "description": description,
            "nodes": nodes,
            "edges": edges,
            "metadata": dict(metadata or {}),
        },
        source=f"builder {name!r}",
    )


def _layered(
    builder: str,
    sizes: Sequence[int],
    first: tuple[str, str],
    last: tuple[str, str],
    **chain_options: Any,
) -> GraphSpec:
    """A layered :func:`chain`: ``first``, h1 … h_{n−2}, ``last``, each end given as
    (name, role), the hidden layers latent."""
    if isinstance(sizes, str | bytes) or not hasattr(sizes, "__len__"):  # (arrays are fine)
        example = f"[{sizes}, 256, 10]" if isinstance(sizes, int) else "[784, 256, 10]"
        raise SpecError(
            f"{builder}: sizes must be a list of layer sizes, got {type(sizes).__name__} "
            f"{sizes!r:.40}; e.g. {builder}({example})"
        )
    if len(sizes) < 2:
        raise SpecError(
            f"{builder}: needs at least 2 sizes (the first and the last layer), got {list(sizes)}"
        )
    check_layers(builder, len(sizes) - 1)
    hidden = [f"h{i}" for i in range(1, len(sizes) - 1)]
    names = [first[0], *hidden, last[0]]
    roles = [first[1], *["latent"] * len(hidden), last[1]]
    return chain(names, list(sizes), roles=roles, **chain_options)


def mlp(
    sizes: Sequence[int],
    *,
    activation: str = "gelu",
    output_energy: str = "gaussian",
    bias: bool = True,
    name: str = "mlp",
    description: str = "",
) -> GraphSpec:
    """A feed-forward classifier x → h1 → … → y: ``x`` is the input, ``y`` the output.

    ``mlp([784, 256, 256, 256, 256, 10])`` is the paper's 5-layer classifier (5 weight layers).
    """
    return _layered(
        "mlp",
        sizes,
        ("x", "input"),
        ("y", "output"),
        activation=activation,
        bias=bias,
        last_energy=output_energy,
        name=name,
        description=description,
    )


def decoder(
    sizes: Sequence[int],
    *,
    activation: str = "gelu",
    bias: bool = True,
    name: str = "decoder",
    description: str = "",
) -> GraphSpec:
    """A generative decoder z → h1 → … → image: only the last node (``image``) is observed.

    ``decoder([256, 256, 256, 256, 784])`` is the paper's 4-layer decoder (4 weight layers).
    The latent ``z`` is a root that no clamp set fixes, so forward init is impossible (Prop. 3.2).
    """
    options = {"activation": activation, "bias": bias, "name": name, "description": description}
    return _layered("decoder", sizes, ("z", "latent"), ("image", "output"), **options)


def residual_mlp(
    depth: int,
    width: int,
    *,
    input_dim: int = 784,
    output_dim: int = 10,
    activation: str = "relu",
    parameterization: str = "mupc",
    output_energy: str = "gaussian",
    name: str = "residual_mlp",
) -> GraphSpec:
    """A fully connected residual network x → z_1 → … → z_{L−1} → y with L = ``depth`` weight
    layers, as in μPC (Innocenti, Achour & Buckley, "μPC: Scaling Predictive Coding to 100+
    Layer Networks", NeurIPS 2025, arXiv:2505.13124), each layer one ``scaled_linear`` edge:

        z_1 = a_1 W_1 x,   z_l = z_{l−1} + a_l W_l φ(z_{l−1})  (l = 2 … L−1),
        y = a_L W_L φ(z_{L−1}),

    skips at every layer but the first and the last. ``parameterization="mupc"`` is μPC's
    Depth-μP scaling with W_l ~ N(0, 1): a_1 = 1/√D (D = ``input_dim``), a_l = 1/√(N L)
    (N = ``width``) and a_L = 1/N; ``"sp"`` is the standard parameterization (a_l = 1, torch's
    default initialization) with the same skips. No biases (as in the paper). The hidden nodes
    are linear: φ is applied inside the edges, so that the skip carries z_{l−1} itself.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 2:
        raise SpecError(f"residual_mlp: depth (weight layers) must be an int ≥ 2, got {depth!r}")
    for what, value in (("width", width), ("input_dim", input_dim), ("output_dim", output_dim)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SpecError(f"residual_mlp: {what} must be a positive int, got {value!r}")
    if parameterization not in ("mupc", "sp"):
        raise SpecError(
            f"residual_mlp: parameterization {parameterization!r} is not one of: mupc, sp"
        )
    check_layers("residual_mlp", depth)
    mupc = parameterization == "mupc"
    L, N, D = depth, width, input_dim
    a_first, a_hidden, a_last = (
        (1 / math.sqrt(D), 1 / math.sqrt(N * L), 1 / N) if mupc else (1.0, 1.0, 1.0)
    )
    init = "normal" if mupc else "default"
    hidden = [f"z{i}" for i in range(1, L)]
    nodes: list[dict[str, Any]] = [
        {"name": "x", "shape": D, "role": "input"},
        *({"name": h, "shape": N} for h in hidden),
        {"name": "y", "shape": output_dim, "role": "output", "energy": output_energy},
    ]

    def edge(src: str, tgt: str, **params: Any) -> dict[str, Any]:
        return {
            "source": src,
            "target": tgt,
            "op": "scaled_linear",
            "bias": False,
            "params": {"init": init, **params},
        }

    edges = [edge("x", hidden[0], scale=a_first)]
    edges += [
        edge(a, b, scale=a_hidden, activation=activation, residual=True)
        for a, b in itertools.pairwise(hidden)
    ]
    edges.append(edge(hidden[-1], "y", scale=a_last, activation=activation))
    description = f"{L}-layer residual MLP, width {N}, {activation}, " + (
        "μPC (Depth-μP) scaling" if mupc else "standard parameterization"
    )
    return GraphSpec.from_dict(
        {"name": name, "description": description, "nodes": nodes, "edges": edges},
        source=name,
    )
