"""``pcgraph evaluate`` and ``pcgraph reconstruct``: restore a run from its checkpoint (and the
options saved beside it) and evaluate it on the test set or draw reconstructions."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from pcgraph.cli.train import TRAIN_DEFAULTS, build_learner, load_data
from pcgraph.cli.validate import check_device, check_output_file, check_train
from pcgraph.errors import CheckpointError, ConfigError, PCGraphError
from pcgraph.limits import check_step_limit

if TYPE_CHECKING:
    from pcgraph.train.trainer import Task

__all__ = ["add_parsers", "run_evaluate", "run_flow", "run_reconstruct"]


def add_parsers(sub: Any) -> None:
    """Register ``evaluate``, ``reconstruct`` and ``flow``."""
    handlers = {"evaluate": run_evaluate, "reconstruct": run_reconstruct, "flow": run_flow}
    for name, helptext in (
        ("evaluate", "evaluate a checkpoint on the test set"),
        ("reconstruct", "reconstruct test images from a checkpoint"),
        ("flow", "animate the energy flowing through a trained network on test images"),
    ):
        q = sub.add_parser(name, help=helptext, description=helptext + ".")
        q.add_argument("checkpoint", help="a checkpoint.pt written by pcgraph train")
        q.add_argument("--T", type=int, help="inference steps (default: the training T)")
        q.add_argument("--test-size", type=int)
        q.add_argument("--device", default="cpu")
        if name == "reconstruct":
            q.add_argument("-o", "--output", default="reconstructions.png")
            q.add_argument("-n", type=int, default=8, help="images shown")
        if name == "flow":
            q.add_argument(
                "-o",
                "--output",
                default="energy_flow.gif",
                help=".gif, .html (step slider), or a still of one step: .png, .pdf, .svg",
            )
            q.add_argument("-n", type=int, default=16, help="test images in the batch")
            q.add_argument(
                "--clamp",
                help="the clamp set: train | predict | generate | comma-separated node names "
                "(default: the training clamp set)",
            )
            q.add_argument(
                "--init", help="initialize with this instead of the checkpoint's initialization"
            )
            q.add_argument("--step", type=int, help="the step a still shows (default: the last)")
        q.set_defaults(handler=handlers[name])


def _restore(path: str, device: str, test_size: int | None) -> tuple[Any, Any]:
    from pcgraph.schema import GraphSpec
    from pcgraph.train import Trainer, load_checkpoint

    data = load_checkpoint(path)
    spec = GraphSpec.from_yaml(str(data["spec_yaml"]))
    opts_path = Path(path).parent / "options.json"
    opts = dict(TRAIN_DEFAULTS)
    if opts_path.is_file():
        try:
            saved = json.loads(opts_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(
                f"{opts_path}: the options saved beside the checkpoint cannot be read ({exc}); "
                "delete it to use the defaults, or retrain"
            ) from None
        if not isinstance(saved, dict):
            raise CheckpointError(f"{opts_path}: expected a JSON object of training options")
        saved.pop("environment", None)  # what made the run (versions, commit, device)
        unknown = sorted(set(saved) - set(TRAIN_DEFAULTS))
        if unknown:
            raise CheckpointError(f"{opts_path}: unknown option(s) {', '.join(unknown)}")
        opts.update(saved)
        try:
            check_train(opts)
        except ConfigError as exc:
            raise CheckpointError(f"{opts_path}: {exc}") from None
    opts["device"] = device
    opts["T"] = int(data["learner"]["T"])
    opts["init"] = str(data["initializer"]["name"])
    _, test = load_data(
        opts["data"],
        embedded=bool(opts["embedded"]),
        train_size=1,
        test_size=test_size or opts["test_size"],
        seed=int(opts["seed"]),
        root=opts["data_root"],
    )
    learner = build_learner(spec, opts)
    trainer = Trainer(
        learner,
        test,
        test,
        task=cast("Task", data["task"]),
        batch_size=min(int(opts["batch_size"]), len(test)),  # (test is its training set too)
        progress=False,
    )
    trainer.load(path)
    return trainer, test


def _check_restore_args(args: argparse.Namespace) -> None:
    check_device(args.device)
    if args.T is not None and args.T < 0:
        raise ConfigError(f"--T must be ≥ 0, got {args.T}")
    if args.T is not None:
        check_step_limit(args.T, "--T")
    if args.test_size is not None and args.test_size < 1:
        raise ConfigError(f"--test-size must be ≥ 1, got {args.test_size}")


def run_evaluate(args: argparse.Namespace) -> int:
    """Execute ``pcgraph evaluate``."""
    _check_restore_args(args)
    trainer, _ = _restore(args.checkpoint, args.device, args.test_size)
    print(json.dumps(trainer.evaluate(T=args.T), indent=2))
    return 0


def run_reconstruct(args: argparse.Namespace) -> int:
    """Execute ``pcgraph reconstruct``."""
    import torch  # the CLI starts without torch (pcgraph check does not need it)

    from pcgraph.viz import plot_reconstructions

    _check_restore_args(args)
    if args.n < 1:
        raise ConfigError(f"-n must be ≥ 1 (images shown), got {args.n}")
    check_output_file(Path(args.output), "--output")
    trainer, test = _restore(args.checkpoint, args.device, args.test_size)
    if trainer.task != "generation":
        raise PCGraphError(
            "reconstruct needs a generative model (a checkpoint trained with the "
            "image as the only observed node)"
        )
    idx = torch.arange(min(args.n, len(test)))
    batch = trainer.batch_data(test, idx)
    recon = trainer.learner.reconstruct(batch, T=args.T)
    images = torch.cat([v.reshape(len(idx), -1) for v in batch.values()], 1)
    rec = torch.cat([v.reshape(len(idx), -1) for v in recon.values()], 1)
    plot_reconstructions(
        images.cpu(), {trainer.learner.initializer.name: rec.cpu()}, n=len(idx), path=args.output
    )
    print(f"wrote {args.output}", file=sys.stdout)
    return 0


def run_flow(args: argparse.Namespace) -> int:
    """Execute ``pcgraph flow``: the checkpoint's learner, from its own initialization, on the
    first ``-n`` test images; nodes coloured by energy per sample, edges by message size."""
    import torch

    from pcgraph.init import INITIALIZERS
    from pcgraph.viz import animate_flow, record_flow
    from pcgraph.viz.flow import FLOW_SUFFIXES, STILL_SUFFIXES

    _check_restore_args(args)
    if args.n < 1:
        raise ConfigError(f"-n must be ≥ 1 (test images), got {args.n}")
    output = Path(args.output)
    check_output_file(output, "--output", suffixes=FLOW_SUFFIXES)
    if args.step is not None and output.suffix.lower() not in STILL_SUFFIXES:
        raise ConfigError(f"--step chooses the step of a still ({', '.join(STILL_SUFFIXES)})")
    if args.init is not None:
        INITIALIZERS.get(args.init)  # an unknown name lists the valid ones, before any work
    trainer, test = _restore(args.checkpoint, args.device, args.test_size)
    learner = trainer.learner
    clamp = learner.clamp if args.clamp is None else learner.net.resolve_clamp(args.clamp)
    idx = torch.arange(min(args.n, len(test)))
    batch = trainer.batch_data(test, idx)
    missing = sorted(set(clamp) - set(batch))
    if missing:
        raise ConfigError(
            f"--clamp {args.clamp}: the test set has no data for {', '.join(missing)} (it "
            f"holds {', '.join(sorted(batch))}); clamp a subset of those"
        )
    batch = {name: batch[name] for name in clamp}
    labels = test.labels[idx] if trainer.task == "classification" else None
    trace = record_flow(learner, batch, T=args.T, clamp=clamp, labels=labels, init=args.init)
    T = trace.node_energy.shape[0] - 1
    if args.step is not None and not 0 <= args.step <= T:
        raise ConfigError(f"--step must be in 0 … {T} (the steps run), got {args.step}")
    animate_flow(trace, output, step=args.step)
    print(f"wrote {output}", file=sys.stdout)
    return 0
