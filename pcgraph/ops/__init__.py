"""Edge operations: one file per kind, all on :class:`EdgeOp`, looked up by name in ``OPS``."""

from __future__ import annotations

from pcgraph.ops.base import EdgeKernel, EdgeOp, OpParams, Shape, ShapeMismatch
from pcgraph.ops.conv import Conv2dOp, ConvTranspose2dOp
from pcgraph.ops.linear import DenseOp, LinearOp
from pcgraph.ops.shape import FlattenOp, IdentityOp, ReshapeOp
from pcgraph.registry import Registry

__all__ = ["OPS", "EdgeKernel", "EdgeOp", "OpParams", "Shape", "ShapeMismatch", "get_op"]

OPS: Registry[EdgeOp] = Registry("edge op")
OPS.register("linear", LinearOp(), aliases=("fc", "fully_connected"))
OPS.register("dense", DenseOp(), aliases=("flatten_linear",))
OPS.register("conv2d", Conv2dOp(), aliases=("conv",))
OPS.register("conv_transpose2d", ConvTranspose2dOp(), aliases=("deconv2d", "convtranspose2d"))
OPS.register("identity", IdentityOp())
OPS.register("flatten", FlattenOp())
OPS.register("reshape", ReshapeOp())


def get_op(name: str) -> EdgeOp:
    """The edge op registered as ``name``; unknown names raise a SpecError listing the choices."""
    return OPS.get(name)
