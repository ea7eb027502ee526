"""Edges whose transformation is a user's ``torch.nn.Module``: ``register_op`` factories and
ready instances (``op: module``).

A factory ``factory(in_shape, out_shape, **params) -> nn.Module`` maps ``[B, *in_shape]`` to
``[B, *out_shape]``; the module is the edge's whole transformation (no bias is added). Its
messages J_fᵀ δ and parameter gradients −(∂f/∂θ)ᵀ δ come from autograd, unless the module
defines ``vjp(s, delta)`` and ``param_grads(s, delta)`` itself (closed forms). The declarations
here import no torch; the kernel is :class:`pcgraph.ops.module_kernel.ModuleKernel`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict, create_model

from pcgraph.errors import SpecError
from pcgraph.ops.base import EdgeOp, KernelRequest, OpParams, Shape

if TYPE_CHECKING:
    from pcgraph.ops.kernel import EdgeKernel

__all__ = ["FactoryOp", "InstanceOp", "params_model_of"]

Factory = Callable[..., Any]


class FactoryOp(EdgeOp):
    """An op registered with :func:`pcgraph.register_op`: its kernel wraps ``factory``'s module.

    Args:
        name: the registered name (``op: name`` in YAML).
        factory: ``factory(in_shape, out_shape, **params) -> nn.Module``.
        smm: sequential matrix multiplications of one pass through the module (for
            ``pcgraph check``'s cost).
    """

    takes_bias = False

    def __init__(self, name: str, factory: Factory, *, smm: int = 1) -> None:
        if not callable(factory):
            raise SpecError(
                f"register_op({name!r}, ...): the factory must be callable "
                f"(in_shape, out_shape, **params) -> torch.nn.Module, got {type(factory).__name__}"
            )
        if isinstance(smm, bool) or not isinstance(smm, int) or smm < 1:
            raise SpecError(f"register_op({name!r}, ...): smm must be an integer ≥ 1, got {smm!r}")
        self.name = name  # type: ignore[misc]  # per instance: one op per registration
        self.factory = factory
        self.smm = smm
        self.params_model = params_model_of(name, factory)  # type: ignore[misc]

    def output_shape(self, in_shape: Shape, out_shape: Shape, params: Any) -> Shape:
        # the factory is asked for a module of exactly these shapes; compile checks that
        # the module keeps its word (pcgraph.ops.module_kernel.check_module)
        return out_shape

    def describe(self, params: Any) -> str:
        args = " ".join(f"{k}={v}" for k, v in params.model_dump().items())
        return f"{self.name} {args}".strip()

    def kernel(self, req: KernelRequest) -> EdgeKernel:
        from pcgraph.ops.module_kernel import ModuleKernel  # torch: only when compiling

        params = req.params.model_dump()
        try:
            module = self.factory(tuple(req.in_shape), tuple(req.out_shape), **params)
        except Exception as exc:  # the user's code: named, not reported as pcgraph's bug
            raise SpecError(
                f"op {self.name!r}: its factory raised {type(exc).__name__}: {exc} (called with "
                f"in_shape={tuple(req.in_shape)}, out_shape={tuple(req.out_shape)}, "
                f"params={params})"
            ) from exc
        if not _is_module(module):
            raise SpecError(
                f"op {self.name!r}: its factory returned {type(module).__name__}, not a "
                "torch.nn.Module"
            )
        return ModuleKernel(req, module)


class InstanceOp(EdgeOp):
    """``op: module``: the edge's module is given to ``compile(spec, modules={(source, target):
    module})``; the spec only declares the edge and its shapes."""

    name = "module"
    takes_bias = False

    def output_shape(self, in_shape: Shape, out_shape: Shape, params: Any) -> Shape:
        return out_shape

    def kernel(self, req: KernelRequest) -> EdgeKernel:
        raise SpecError(  # PCNetwork builds these edges from its ``modules`` argument
            "an edge with op: module takes its module from Python: compile(spec, "
            "modules={(source, target): module}); from the command line, register a factory "
            "with pcgraph.register_op in a --plugin file and use op: <its name>"
        )


def params_model_of(name: str, factory: Factory) -> type[OpParams]:
    """A frozen pydantic model of ``factory``'s keyword parameters (after ``in_shape`` and
    ``out_shape``), with their annotations and defaults: YAML ``params`` are checked against it
    and unknown keys are refused by name (unless the factory takes ``**kwargs``)."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):  # a builtin without a signature: any keys
        return create_model(f"{name}_params", __base__=_AnyParams)
    params = list(sig.parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < 2 and not any(p.kind == p.VAR_POSITIONAL for p in params):
        raise SpecError(
            f"register_op({name!r}, ...): the factory must take (in_shape, out_shape, **params); "
            f"its signature is {sig}"
        )
    fields: dict[str, Any] = {}
    for p in positional[2:] + [p for p in params if p.kind == p.KEYWORD_ONLY]:
        annotation = Any if p.annotation is p.empty else p.annotation
        fields[p.name] = (annotation, ... if p.default is p.empty else p.default)
    base = _AnyParams if any(p.kind == p.VAR_KEYWORD for p in params) else OpParams
    try:
        return create_model(f"{name}_params", __base__=base, **fields)
    except Exception as exc:  # an annotation pydantic cannot use (a string it cannot resolve)
        raise SpecError(
            f"register_op({name!r}, ...): cannot read the factory's parameters {list(fields)}: "
            f"{exc}"
        ) from exc


class _AnyParams(OpParams):
    model_config = ConfigDict(frozen=True, extra="allow")


def _is_module(obj: object) -> bool:
    from torch import nn  # torch: only when compiling

    return isinstance(obj, nn.Module)
