"""The paper's unsupervised experiment: a 4-layer generative decoder on FashionMNIST.

Only the image is observed (clamp set = {image}); the latent z is a root nothing clamps, so forward
initialization is impossible (Proposition 3.2). The script trains the decoder with each
initialization — memory (Hopfield), zero, random, null — at small numbers of inference steps
T_train, then reconstructs test images: clamp the image, infer the free nodes for T_eval steps from
the initializer, and forward the inferred latent back to an image. It reports the test
reconstruction MSE per (init, T_train, T_eval) and saves, under --out:

  results.json          {"results": [{"init", "T_train", "T_eval", "test_mse"}, ...], "config",
                        "machine" (CPU, vector width, threads, torch), ...}
  reconstructions.png   originals vs reconstructions per initialization
  learning_curves.png   test MSE per epoch per initialization
  energy_flow_<init>.png per-node energy over inference steps (memory and zero init)

The memory is trained on the energy at initialization through the forward sweep (loss=energy),
which has a learning signal at every T, also below z's depth of 4 (docs/initializations.md).
Evaluation uses the neuron step min(γ, 1/λ_max), λ_max the largest curvature of the energy at
the initial state (--eval-step stable): with γ above 2/λ_max inference diverges at large T_eval.
The defaults (γ = 0.02, AdamW 3e-3, memory Adam 1e-3) are the memory's best setting of the
search in docs/results.md.

Examples:
  python examples/decoder_generation.py            # defaults: embedded subset, a few minutes
  python examples/decoder_generation.py --quick    # ~1 minute smoke run
  python examples/decoder_generation.py --full --device cuda
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import _shared as shared
import torch
from tqdm import tqdm

import pcgraph as pc
from pcgraph.atomic import atomic_write_text
from pcgraph.data import ImageDataset
from pcgraph.train import EpochRecorder, Trainer

TOPOLOGY = Path(__file__).resolve().parent.parent / "topologies" / "decoder4_fashion.yaml"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="~1-minute smoke run (CI runs this)")
    p.add_argument(
        "--full",
        action="store_true",
        help="the whole dataset (needs the real files; see pcgraph.data)",
    )
    p.add_argument("--out", default="runs/decoder_generation", help="output directory")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument(
        "--inits",
        default="memory,zero,random,null",
        help="comma-separated initializations to compare",
    )
    p.add_argument("--T-train", default=None, help="comma-separated T_train values")
    p.add_argument("--T-eval", default=None, help="comma-separated T_eval values")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--train-size", type=int, default=None, help="training images used")
    p.add_argument("--test-size", type=int, default=None, help="test images used")
    # defaults: the best memory setting of the search in docs/results.md (§4)
    p.add_argument("--lr", type=float, default=3e-3, help="AdamW learning rate of the weights")
    p.add_argument("--lr-neurons", type=float, default=0.02, help="γ, SGD rate of the neurons")
    p.add_argument(
        "--eval-step",
        default="stable",
        choices=["stable", "fixed", "backtrack"],
        help="neuron step at evaluation: min(γ, 1/λ_max) of the energy's Hessian (stable "
        "for any T_eval), γ itself, or γ with the engine's backtracking (a step that raises "
        "the energy is undone and halved)",
    )
    p.add_argument("--seed", type=int, default=0)
    m = p.add_argument_group("memory initialization (docs/initializations.md)")
    m.add_argument(
        "--mem-loss",
        default="energy",
        choices=["energy", "sweep", "target"],
        help="the memory's loss: energy at init through the sweep, Eq. 9 through the sweep, "
        "or Eq. 9 on z only (the paper's text; no signal when T_train < 4)",
    )
    m.add_argument("--mem-lr", type=float, default=1e-3, help="the memory's Adam learning rate")
    m.add_argument("--mem-steps", type=int, default=1, help="memory steps per minibatch")
    m.add_argument("--patterns", type=int, default=512, help="stored patterns M")
    m.add_argument("--heads", type=int, default=4, help="attention heads")
    m.add_argument("--embed-dim", type=int, default=128, help="query/key width")
    m.add_argument("--beta", type=float, default=None, help="β (default 1/√head_dim)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = p.parse_args(argv)
    if args.quick and args.full:
        p.error("--quick and --full exclude each other")
    preset = (
        {"T_train": "4", "T_eval": "4", "epochs": 1, "train_size": 1000, "test_size": 256}
        if args.quick
        else {
            "T_train": "2,4,8",
            "T_eval": "2,4,8,16",
            "epochs": 10,
            "train_size": None,
            "test_size": None,
        }
        if args.full
        else {
            "T_train": "2,8",
            "T_eval": "2,8,32,64",
            "epochs": 4,
            "train_size": 5000,
            "test_size": 1000,
        }
    )
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.T_train = [int(t) for t in str(args.T_train).split(",")]
    args.T_eval = [int(t) for t in str(args.T_eval).split(",")]
    args.inits = [s.strip() for s in args.inits.split(",") if s.strip()]
    return args


def largest_curvature(
    learner: pc.PCLearner, images: torch.Tensor, *, iters: int = 20, seed: int = 0
) -> float:
    """λ_max of the Hessian of E over the free states at the initializer's x(0) for ``images``,
    by power iteration on Hessian-vector products (autograd through ``net.energy``).

    Gradient descent on E with step γ is stable near x(0) only while γ λ_max < 2 (the update
    x ← x − γ ∇E multiplies the top eigendirection by 1 − γ λ_max). Where E is not convex and
    the dominant eigenvalue λ₋ is negative, the iteration is rerun on H − λ₋ I.
    """
    net, clamp = learner.net, learner.clamp
    ctx = learner.context(clamp, train=False)
    x = learner.prepare_states({"image": images}, clamp)
    with torch.no_grad():
        learner.initializer.init(x, ctx)
    x = x.detach().clone()
    mask = ctx.free_cols.to(x.dtype)
    g = torch.Generator(device=x.device).manual_seed(seed)
    v0 = torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype) * mask
    with torch.enable_grad():
        xx = x.requires_grad_(True)
        (grad,) = torch.autograd.grad(net.energy(xx), xx, create_graph=True)

        def power(shift: float) -> float:
            """The eigenvalue of largest |·| of H − shift·I, by power iteration."""
            v, lam = v0 / v0.norm(), 0.0
            for _ in range(iters):
                (hv,) = torch.autograd.grad(grad, xx, grad_outputs=v, retain_graph=True)
                hv = hv * mask - shift * v
                lam = float((hv * v).sum())
                v = hv / hv.norm().clamp_min(1e-30)
            return lam

        lam = power(0.0)
        if lam < 0:  # E is not convex there: the dominant eigenvalue was the most negative one
            lam = power(lam) + lam
    return lam


def stable_step_size(
    learner: pc.PCLearner, images: torch.Tensor, *, gamma: float, margin: float = 1.0
) -> float:
    """min(γ, margin / λ_max): the neuron step used for evaluation, half the stability limit
    2 / λ_max with the default margin (λ_max changes along the trajectory and across batches)."""
    lam = largest_curvature(learner, images)
    return gamma if lam <= 0 else min(gamma, margin / lam)


@contextmanager
def evaluation_step(
    learner: pc.PCLearner, test: torch.Tensor, args: argparse.Namespace
) -> Iterator[float]:
    """Evaluate with the neuron step of ``--eval-step``: ``stable`` = min(γ, 1/λ_max) measured
    on the first test batch (training keeps γ), ``fixed`` = γ."""
    gamma, rule = learner.lr_neurons, learner.step_rule
    if args.eval_step == "stable":
        learner.lr_neurons = stable_step_size(learner, test[: args.batch_size], gamma=gamma)
    elif args.eval_step == "backtrack":
        learner.step_rule = "backtrack"
    try:
        yield learner.lr_neurons
    finally:
        learner.lr_neurons, learner.step_rule = gamma, rule


def test_mse(learner: pc.PCLearner, images: torch.Tensor, T: int, batch_size: int) -> float | None:
    """Mean squared error of reconstructions of ``images`` (inference T steps, then forward);
    None when inference diverged (the engine's EnergyError: the cell is reported, not fatal)."""
    total, count = 0.0, 0
    for start in range(0, len(images) - batch_size + 1, batch_size):
        batch = images[start : start + batch_size]
        try:
            recon = learner.reconstruct({"image": batch}, T=T)["image"]
        except pc.EnergyError:
            return None
        total += float(((recon - batch) ** 2).sum())
        count += batch.numel()
    return total / max(count, 1)


def memory_options(args: argparse.Namespace) -> dict[str, Any]:
    """The memory initializer's options from the command line."""
    return {
        "loss": args.mem_loss,
        "lr": args.mem_lr,
        "steps": args.mem_steps,
        "patterns": args.patterns,
        "heads": args.heads,
        "embed_dim": args.embed_dim,
        "beta": args.beta,
        "seed": args.seed,
    }


def run_one(
    args: argparse.Namespace,
    init: str,
    T_train: int,
    train_set: ImageDataset,
    test: torch.Tensor,
    bar: Any,
) -> dict[str, Any]:
    """Train one decoder with ``Trainer.fit``; the test MSE at T_train is measured after every
    epoch (off the clock), then at every T_eval."""
    net = pc.compile(TOPOLOGY, seed=args.seed, device=args.device)
    learner = pc.PCLearner(
        net,
        init=init,
        T=T_train,
        lr_neurons=args.lr_neurons,
        clamp="generate",
        optimizer=torch.optim.AdamW(net.parameters(), lr=args.lr),
        init_options=memory_options(args) if init == "memory" else None,
        generator=torch.Generator(device=args.device).manual_seed(args.seed),
    )

    def evaluate(learner: pc.PCLearner) -> dict[str, float]:
        with evaluation_step(learner, test, args):
            mse = test_mse(learner, test, T_train, args.batch_size)
        mse = float("nan") if mse is None else mse  # nan: diverged, drawn as a gap
        bar.set_postfix(init=init, T=T_train, mse=str(mse)[:6])
        return {"test_mse": mse}

    recorder = EpochRecorder(evaluate, on_batch=lambda _: bar.update(1))
    trainer = Trainer(
        learner,
        train_set,
        None,
        batch_size=args.batch_size,
        epochs=args.epochs,
        seed=args.seed,
        callbacks=[recorder],
        progress=False,
    )
    trainer.fit()
    with evaluation_step(learner, test, args) as gamma_eval:
        evals = {T: test_mse(learner, test, T, args.batch_size) for T in args.T_eval}
    return {
        "learner": learner,
        "curve": recorder.record["test_mse"],
        "energy": recorder.record["energy_after"],
        "evals": evals,
        "seconds": recorder.record["train_seconds"][-1],
        "gamma_eval": gamma_eval,
        "smm_total": learner.smm_total,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda but CUDA is not available", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    train_set, test_set = shared.load_data(args, seed=args.seed)
    test = test_set.flat().to(args.device)
    print(shared.machine_line())  # the table's float32 numbers move with the CPU's kernels
    print(f"data: {len(train_set)} train / {len(test)} test images from {train_set.source}")
    print(
        pc.analyze(
            pc.GraphSpec.from_yaml(TOPOLOGY), "generate", T=min(args.T_train), init="memory"
        ).summary()
    )
    steps = len(args.inits) * len(args.T_train) * args.epochs * (len(train_set) // args.batch_size)
    results, curves, runs = [], {}, {}
    with tqdm(total=steps, desc="training", disable=args.no_progress, file=sys.stdout) as bar:
        for init in args.inits:
            for T_train in args.T_train:
                run = run_one(args, init, T_train, train_set, test, bar)
                runs[(init, T_train)] = run
                curves[f"{init} (T_train={T_train})"] = {
                    "epoch": list(range(1, len(run["curve"]) + 1)),
                    "test_mse": run["curve"],
                    "energy": run["energy"],
                }
                for T_eval, mse in run["evals"].items():
                    results.append(
                        {
                            "init": init,
                            "T_train": T_train,
                            "T_eval": T_eval,
                            "test_mse": mse,
                            "train_seconds": run["seconds"],
                            "smm_total": run["smm_total"],
                        }
                    )
    print_table(results, args)
    payload = {
        "results": results,
        "curves": curves,
        "config": {k: v for k, v in vars(args).items()},
        "data_source": train_set.source,
        "machine": shared.machine(),
    }
    atomic_write_text(out / "results.json", json.dumps(payload, indent=2))
    save_figures(args, runs, curves, test, out)
    print(f"results and figures written to {out}/")
    return 0


def print_table(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print("\ntest reconstruction MSE (rows: init, T_train; columns: T_eval)")
    print(f"{'init':>8} {'T_train':>7} " + " ".join(f"{t:>8}" for t in args.T_eval))
    for init in args.inits:
        for T_train in args.T_train:
            row = {
                r["T_eval"]: r["test_mse"]
                for r in results
                if r["init"] == init and r["T_train"] == T_train
            }
            cells = (f"{row[t]:8.4f}" if row[t] is not None else "diverged" for t in args.T_eval)
            print(f"{init:>8} {T_train:>7} " + " ".join(cells))


def save_figures(
    args: argparse.Namespace,
    runs: dict[tuple[str, int], dict[str, Any]],
    curves: dict[str, Any],
    test: torch.Tensor,
    out: Path,
) -> None:
    from pcgraph.viz import plot_energy_flow, plot_history, plot_reconstructions

    # every (init, T_train) at the smallest T_eval: the regime the paper's claim is about
    T_eval = min(args.T_eval)
    batch = test[: args.batch_size]
    recons = {}
    for init in args.inits:
        for T_train in args.T_train:
            learner = runs[(init, T_train)]["learner"]
            label = f"{init}\nT_train={T_train}\nT_eval={T_eval}"
            with evaluation_step(learner, test, args):
                recons[label] = learner.reconstruct({"image": batch}, T=T_eval)["image"].cpu()
    plot_reconstructions(batch.cpu(), recons, n=8, path=out / "reconstructions.png")
    plot_history(curves, path=out / "learning_curves.png")
    T_train = max(args.T_train)
    for init in ("memory", "zero"):
        if (init, T_train) in runs:
            learner = runs[(init, T_train)]["learner"]
            with evaluation_step(learner, test, args):
                result = learner.infer(
                    {"image": batch}, clamp={"image"}, T=max(args.T_eval), trace=True
                )
            assert result.trace is not None
            plot_energy_flow(
                result.trace.cpu(), learner.net.spec, path=out / f"energy_flow_{init}.png"
            )


if __name__ == "__main__":
    sys.exit(main())
