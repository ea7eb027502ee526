"""Edge operations: one file per kind, all on :class:`EdgeOp`, looked up by name in ``OPS``.

The declarations (parameters, shape rules, this registry) do not import torch; each op's kernel
lives in a ``*_kernel`` module that :meth:`EdgeOp.make_kernel` imports when a network is compiled.
``EdgeKernel`` is imported from :mod:`pcgraph.ops.kernel` on first use of the name here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pcgraph.ops.base import EdgeOp, OpParams, Shape, ShapeMismatch
from pcgraph.ops.conv import Conv2dOp, ConvTranspose2dOp
from pcgraph.ops.linear import DenseOp, LinearOp, ScaledLinearOp
from pcgraph.ops.shape import FlattenOp, IdentityOp, ReshapeOp
from pcgraph.registry import Registry

__all__ = ["OPS", "EdgeKernel", "EdgeOp", "OpParams", "Shape", "ShapeMismatch", "get_op"]

OPS: Registry[EdgeOp] = Registry("edge op")
OPS.register("linear", LinearOp(), aliases=("fc", "fully_connected"))
OPS.register("dense", DenseOp(), aliases=("flatten_linear",))
OPS.register("scaled_linear", ScaledLinearOp(), aliases=("residual_linear",))
OPS.register("conv2d", Conv2dOp(), aliases=("conv",))
OPS.register("conv_transpose2d", ConvTranspose2dOp(), aliases=("deconv2d", "convtranspose2d"))
OPS.register("identity", IdentityOp())
OPS.register("flatten", FlattenOp())
OPS.register("reshape", ReshapeOp())


if TYPE_CHECKING:
    from pcgraph.ops.kernel import EdgeKernel


def __getattr__(name: str) -> Any:
    if name == "EdgeKernel":
        from pcgraph.ops.kernel import EdgeKernel

        return EdgeKernel
    raise AttributeError(f"module 'pcgraph.ops' has no attribute {name!r}")


def get_op(name: str) -> EdgeOp:
    """The edge op registered as ``name``; unknown names raise a SpecError listing the choices."""
    return OPS.get(name)
