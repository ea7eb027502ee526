"""Edge operations: one file per kind, all on :class:`EdgeOp`, looked up by name in ``OPS``.

The declarations (parameters, shape rules, this registry) do not import torch; each op's kernel
lives in a ``*_kernel`` module that :meth:`EdgeOp.make_kernel` imports when a network is compiled.
``EdgeKernel`` is imported from :mod:`pcgraph.ops.kernel` on first use of the name here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pcgraph.errors import SpecError
from pcgraph.ops.base import EdgeOp, OpParams, Shape, ShapeMismatch
from pcgraph.ops.conv import Conv2dOp, ConvTranspose2dOp
from pcgraph.ops.linear import DenseOp, LinearOp, ScaledLinearOp
from pcgraph.ops.module import FactoryOp, InstanceOp
from pcgraph.ops.pool import AvgPool2dOp, DropoutOp, LayerNormOp, MaxPool2dOp, SelfAttentionOp
from pcgraph.ops.shape import FlattenOp, IdentityOp, ReshapeOp
from pcgraph.registry import Registry, normalize_name

__all__ = [
    "OPS",
    "EdgeKernel",
    "EdgeOp",
    "FactoryOp",
    "OpParams",
    "Shape",
    "ShapeMismatch",
    "get_op",
    "register_op",
]

OPS: Registry[EdgeOp] = Registry("edge op")
OPS.register("linear", LinearOp(), aliases=("fc", "fully_connected"))
OPS.register("dense", DenseOp(), aliases=("flatten_linear",))
OPS.register("scaled_linear", ScaledLinearOp(), aliases=("residual_linear",))
OPS.register("conv2d", Conv2dOp(), aliases=("conv",))
OPS.register("conv_transpose2d", ConvTranspose2dOp(), aliases=("deconv2d", "convtranspose2d"))
OPS.register("identity", IdentityOp())
OPS.register("flatten", FlattenOp())
OPS.register("reshape", ReshapeOp())
OPS.register("avg_pool2d", AvgPool2dOp(), aliases=("avgpool2d", "avg_pool"))
OPS.register("max_pool2d", MaxPool2dOp(), aliases=("maxpool2d", "max_pool"))
OPS.register("layer_norm", LayerNormOp(), aliases=("layernorm",))
OPS.register("dropout", DropoutOp())
OPS.register("self_attention", SelfAttentionOp(), aliases=("attention",))
OPS.register("module", InstanceOp())  # compile(spec, modules={(source, target): module})


if TYPE_CHECKING:
    from pcgraph.ops.kernel import EdgeKernel


def __getattr__(name: str) -> Any:
    if name == "EdgeKernel":
        from pcgraph.ops.kernel import EdgeKernel

        return EdgeKernel
    raise AttributeError(f"module 'pcgraph.ops' has no attribute {name!r}")


def register_op(
    name: str,
    factory: Any,
    *,
    smm: int = 1,
    aliases: tuple[str, ...] = (),
    replace: bool = False,
) -> EdgeOp:
    """Make ``op: name`` carry a module built by ``factory`` (Python specs, YAML, the CLI with
    ``--plugin``).

    Args:
        name: the op's name in specs.
        factory: ``factory(in_shape, out_shape, **params) -> torch.nn.Module`` mapping
            ``[B, *in_shape]`` to ``[B, *out_shape]``; the module is the edge's whole
            transformation (no bias is added). Its keyword parameters are the edge's
            ``params`` (checked by name, type and default). Messages and parameter gradients
            come from autograd unless the module defines ``vjp(s, delta)`` and
            ``param_grads(s, delta)``.
        smm: sequential matrix multiplications of one pass through the module, for the cost
            ``pcgraph check`` reports (1: one product, like ``linear``).
        aliases: other names for it.
        replace: put it in place of an op already registered as ``name``.

    Raises:
        SpecError: ``factory`` is not callable or does not take (in_shape, out_shape, ...),
            ``smm`` < 1, or the name is taken (and ``replace`` is off).
    """
    if isinstance(factory, EdgeOp):  # a full op declaration (parameters model, kernel)
        return OPS.register(name, factory, aliases=aliases, replace=replace)
    if not isinstance(name, str):
        raise SpecError(f"register_op: the name must be a string, got {name!r}")
    op = FactoryOp(normalize_name(name), factory, smm=smm)
    return OPS.register(name, op, aliases=aliases, replace=replace)


def get_op(name: str) -> EdgeOp:
    """The edge op registered as ``name``; unknown names raise a SpecError listing the choices."""
    return OPS.get(name)
