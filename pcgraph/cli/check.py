"""``pcgraph check FILE``: validate a topology and explain it under a clamp set."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pcgraph.analysis import analyze, check_init, resolve_clamp
from pcgraph.cli.command import add_topology_command
from pcgraph.errors import ConfigError, SpecError
from pcgraph.limits import check_step_limit
from pcgraph.registry import normalize_name
from pcgraph.schema import GraphSpec

__all__ = ["add_parser", "run_check"]


SUMMARY = "validate a topology and explain it"
DESCRIPTION = (
    "Validate FILE and say in plain words whether it is a DAG, which roots are "
    "clamped, whether forward initialization is possible (Proposition 3.2) and why not, which "
    "initialization 'auto' picks, and the cost of one weight update in sequential matrix "
    "multiplications (SMMs). Exit 0 when valid, 2 with one message when not."
)


def add_parser(sub: Any) -> None:
    """Register the ``check`` sub-command."""
    p = add_topology_command(
        sub,
        "check",
        run_check,
        SUMMARY,
        DESCRIPTION,
        file_help="a topology YAML file, e.g. topologies/mlp5_fashion.yaml",
    )
    p.add_argument(
        "--clamp",
        default="train",
        help="train | predict | generate | none | comma-separated node names (default: train)",
    )
    p.add_argument("--T", type=int, default=8, help="inference steps for the SMM count (default 8)")
    p.add_argument(
        "--init",
        default="auto",
        help="check that this initialization can be used here (default: auto)",
    )
    p.add_argument(
        "--K", type=int, default=2, help="hybrid: forward depth K, for its cost (default 2)"
    )
    p.add_argument("--json", action="store_true", help="print the analysis as JSON")


def run_check(args: argparse.Namespace) -> int:
    """Execute ``pcgraph check``."""
    # a Path, so that a missing FILE is reported as such whatever its suffix (a plain string not
    # ending in .yaml would be parsed as YAML text)
    spec = GraphSpec.from_yaml(Path(args.file))
    _probe_modules(spec)
    if args.T < 0:
        raise ConfigError(f"--T must be ≥ 0, got {args.T}")
    check_step_limit(args.T, "--T")
    if args.K < 0:
        raise ConfigError(f"--K must be ≥ 0, got {args.K}")
    clamp = resolve_clamp(spec, args.clamp)
    init = check_init(spec, clamp, args.init)
    # auto is explained per clamp set (training, evaluation), so it is passed on as itself
    auto = normalize_name(args.init) == "auto"
    depth = args.K if init == "hybrid" else None  # the cost of hybrid at its K
    result = analyze(spec, clamp, T=args.T, init="auto" if auto else init, depth=depth)
    if args.json:
        payload = result.to_dict() | {"init": init}
        print(json.dumps(payload, indent=2))
    else:
        print(result.summary())
        if args.init != "auto":
            print(f"- initialization {init!r} is valid here")
    return 0


def _probe_modules(spec: GraphSpec) -> None:
    """Build the edges carried by a registered module factory (a plugin's ``register_op``) and
    run each once, as compile does: a module of the wrong shape, or a factory that fails, is
    found here and not first by ``train``. Graphs of built-in ops need no torch for ``check``."""
    from pcgraph.ops import OPS, FactoryOp

    if not any(isinstance(OPS.get(edge.op), FactoryOp) for edge in spec.edges):
        return
    import torch

    from pcgraph.ops.module_kernel import ModuleKernel, check_module

    for edge in spec.edges:
        op = OPS.get(edge.op)
        if not isinstance(op, FactoryOp):
            continue
        src, dst = spec.node(edge.source), spec.node(edge.target)
        try:
            kernel = op.make_kernel(
                src.shape, dst.shape, op.parse_params(edge.params), bias=False, dtype=torch.float32
            )
        except SpecError as exc:
            raise SpecError(f"edge {edge.label}: {exc}") from exc
        assert isinstance(kernel, ModuleKernel)
        check_module(kernel, edge.label, src.shape, dst.shape)
