"""The edge-op protocol: parameters and shape inference (for the schema), and a factory of kernels
(for the compiler, :mod:`pcgraph.ops.kernel`). This module does not import torch, so that the
schema, the graph analysis and ``pcgraph check`` run without it.

An edge j→i carries a transformation f_ji. Its *kernel* computes the contribution f_ji(s_j) to the
prediction μ_i of the target, the message J_fᵀ δ_i sent back to the source, and the parameter
gradients ∂E/∂θ_ji = −(∂f/∂θ)ᵀ δ_i, where δ_i = −∂E/∂μ_i is the target's error signal
(w_i ε_i for a gaussian node).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import torch

    from pcgraph.ops.kernel import EdgeKernel

__all__ = ["EdgeOp", "KernelRequest", "NoParams", "OpParams", "Shape", "ShapeMismatch"]

Shape = tuple[int, ...]


class ShapeMismatch(ValueError):
    """Raised by :meth:`EdgeOp.output_shape`; the schema adds the edge's name to the message."""


class OpParams(BaseModel):
    """Base of every op's parameter model: frozen, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class NoParams(OpParams):
    """An op without parameters."""


@dataclass(frozen=True)
class KernelRequest:
    """What the compiler asks an op's kernel factory for: one edge's shapes and parameters,
    whether it has a bias, and where its tensors live."""

    in_shape: Shape
    out_shape: Shape
    params: Any
    bias: bool
    device: torch.device | str | None = None
    dtype: torch.dtype | None = None

    @property
    def factory(self) -> dict[str, Any]:
        """``device=`` and ``dtype=`` for a torch factory or module constructor."""
        return {"device": self.device, "dtype": self.dtype}


class EdgeOp:
    """One kind of edge transformation (linear, conv2d, …): validation and kernel factory."""

    name: ClassVar[str]
    params_model: ClassVar[type[OpParams]] = NoParams
    learnable: ClassVar[bool] = True
    takes_bias: ClassVar[bool] = True  # False: the op is the whole transformation (a module)
    smm: int = 1  # sequential matrix multiplications of one pass (pcgraph check's cost)

    def parse_params(self, raw: dict[str, Any]) -> OpParams:
        """Validate raw params (pydantic errors are turned into SpecErrors by the schema)."""
        return self.params_model.model_validate(raw)

    def output_shape(self, in_shape: Shape, out_shape: Shape, params: Any) -> Shape:
        """The shape this op produces from ``in_shape``; ``out_shape`` is the target's shape,
        used only by ops whose output size is taken from the target (linear features, channels).

        Raises:
            ShapeMismatch: when the op cannot accept ``in_shape`` at all.
        """
        raise NotImplementedError

    def describe(self, params: Any) -> str:
        """A short label like ``conv2d k=3 s=2`` for messages and drawings."""
        return self.name

    def make_kernel(
        self,
        in_shape: Shape,
        out_shape: Shape,
        params: Any,
        *,
        bias: bool,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> EdgeKernel:
        """Build the kernel with freshly initialized parameters (torch's defaults)."""
        return self.kernel(KernelRequest(in_shape, out_shape, params, bias, device, dtype))

    def kernel(self, req: KernelRequest) -> EdgeKernel:
        """The op's kernel factory: override this (import torch inside it, so that the schema
        and ``pcgraph check`` never load torch)."""
        raise NotImplementedError
