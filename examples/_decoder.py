"""The decoder example's parts (examples/decoder_generation.py): one training run (a job, run in
a worker process or in place), each init's weight optimizer, the stable neuron step
min(γ, 1/λ_max) from the energy's largest curvature, the test reconstruction MSE, and the PCA
floors the table is judged against. A module of its own so that spawned workers import it."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import _shared as shared
import torch

import pcgraph as pc
from pcgraph.engine.readout import reconstruct_along
from pcgraph.train import EpochRecorder, Trainer

__all__ = [
    "EVAL_BATCH",
    "MEMORY_LR",
    "TOPOLOGY",
    "WEIGHTS",
    "WEIGHTS_EPC",
    "WEIGHTS_EPC_FULL",
    "algorithm_of",
    "evaluation_step",
    "largest_curvature",
    "make_optimizer",
    "memory_options",
    "pca_floors",
    "run_job",
    "stable_step_size",
    "test_mse",
    "test_mses",
    "weight_setting",
]

TOPOLOGY = Path(__file__).resolve().parent.parent / "topologies" / "decoder4_fashion.yaml"

# test images per inference call where the init's result per image does not depend on the batch
# (all but null, which starts from the last training batch's states when the sizes match): one
# thread runs a step on 250 images in ~0.8× the time of 4 steps on 64 (products at B = 64 are
# small)
EVAL_BATCH = 250

# each init's own weight optimizer and learning rate, the best of the searches in
# docs/results.md (§4: AdamW for the baselines; §4b: SGD for memory, whose initial state is
# already close to the energy's minimum, so the hidden layers' local targets are tiny and
# AdamW's normalized steps overshoot them); --optimizer / --lr override them for every init
WEIGHTS: dict[str, tuple[str, float]] = {
    "memory": ("sgd", 4e-5),
    "zero": ("adamw", 3e-3),
    "random": ("adamw", 3e-3),
    "null": ("adamw", 3e-3),
}
# under ePC every weight gets its whole gradient through the sweep (backprop's at ε = 0), so the
# small-local-target argument for SGD does not apply: AdamW 1e-3 for every init (not searched);
# on the whole dataset 5e-4 (at 1e-3 one seed of three rose in its last epoch: docs/results.md §4)
WEIGHTS_EPC: tuple[str, float] = ("adamw", 1e-3)
WEIGHTS_EPC_FULL: tuple[str, float] = ("adamw", 5e-4)
# the memory's Adam rate: 1e-2 under PC (the best of 1e-3 … 1e-2, docs/results.md §4); 2e-3
# under ePC, whose weight steps are the whole gradient (the rate of the ePC runs on the page)
MEMORY_LR = {"pc": 1e-2, "epc": 2e-3}


def algorithm_of(args: argparse.Namespace, init: str) -> str:
    """The training algorithm of ``init``'s runs: --algorithm where given; else with --full,
    ePC for memory init (its best on the whole dataset, below a 50-component PCA) and PC for
    the others (from z = 0 or noise ePC does not learn: docs/results.md §4); else PC."""
    chosen = getattr(args, "algorithm", None)
    if chosen is not None:
        return str(chosen)
    return "epc" if getattr(args, "full", False) and init == "memory" else "pc"


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
    on the first test batch (training keeps γ), ``fixed`` = γ. Under ePC always γ: λ_max is
    the curvature of E in the states, not of F in the errors that ePC steps in."""
    gamma, rule = learner.lr_neurons, learner.step_rule
    if learner.algorithm == "epc":  # λ_max is of E in the states; ePC steps in the errors
        pass
    elif args.eval_step == "stable":
        learner.lr_neurons = stable_step_size(learner, test[: args.batch_size], gamma=gamma)
    elif args.eval_step == "backtrack":
        learner.step_rule = "backtrack"
    try:
        yield learner.lr_neurons
    finally:
        learner.lr_neurons, learner.step_rule = gamma, rule


def test_mse(learner: pc.PCLearner, images: torch.Tensor, T: int, batch_size: int) -> float | None:
    """Mean squared error of reconstructions of ``images`` (inference T steps, then forward), in
    batches of ``batch_size``; None when inference diverged (the engine's EnergyError: the cell
    is reported, not fatal). With a fixed neuron step and an init that treats samples alone, each
    image's inference is independent of the others; null init is not such an init (it starts
    from the last training batch's states when the batch sizes match)."""
    return test_mses(learner, images, [T], batch_size)[T]


def test_mses(
    learner: pc.PCLearner, images: torch.Tensor, Ts: list[int], batch_size: int
) -> dict[int, float | None]:
    """T → ``test_mse`` at T for every T in ``Ts``, all read along one inference run per batch
    where the solver allows it (:func:`pcgraph.engine.readout.reconstruct_along`); None for
    every T when inference diverged."""
    totals = dict.fromkeys(Ts, 0.0)
    count = 0
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        try:
            recons = reconstruct_along(learner, {"image": batch}, Ts)
        except pc.EnergyError:
            return dict.fromkeys(Ts)
        for T in Ts:
            totals[T] += float(((recons[T]["image"] - batch) ** 2).sum())
        count += batch.numel()
    return {T: totals[T] / max(count, 1) for T in Ts}


@torch.no_grad()
def pca_floors(
    train: torch.Tensor, test: torch.Tensor, ks: tuple[int, ...] = (2, 10, 50)
) -> dict[int, float]:
    """Test MSE of PCA with k components fitted on ``train`` (centred, exact SVD in float64):
    the floor a reconstruction of each image, not of its class, has to beat."""
    mean = train.double().mean(0)
    _, _, vh = torch.linalg.svd(train.double() - mean, full_matrices=False)
    centred = test.double() - mean
    floors = {}
    for k in ks:
        basis = vh[:k]
        recon = centred @ basis.T @ basis
        floors[k] = float(((recon - centred) ** 2).mean())
    return floors


def memory_options(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """The memory initializer's options from the command line."""
    return {
        "loss": args.mem_loss,
        "lr": args.mem_lr if args.mem_lr is not None else MEMORY_LR[algorithm_of(args, "memory")],
        "steps": args.mem_steps,
        "patterns": args.patterns,
        "heads": args.heads,
        "embed_dim": args.embed_dim,
        "beta": args.beta,
        "linear": args.mem_linear,
        "seed": seed,
    }


def weight_setting(args: argparse.Namespace, init: str) -> tuple[str, float]:
    """(optimizer, learning rate) of the weights under ``init``: --optimizer / --lr where
    given, else the init's own best (``WEIGHTS``, ``WEIGHTS_EPC`` under ePC, ``WEIGHTS_EPC_FULL``
    under ePC on the whole dataset; AdamW 3e-3 for an init not searched)."""
    if algorithm_of(args, init) == "epc":
        kind, lr = WEIGHTS_EPC_FULL if getattr(args, "full", False) else WEIGHTS_EPC
    else:
        kind, lr = WEIGHTS.get(init, ("adamw", 3e-3))
    return args.optimizer or kind, args.lr if args.lr is not None else lr


def make_optimizer(args: argparse.Namespace, init: str, net: pc.PCNetwork) -> torch.optim.Optimizer:
    """The weights' optimizer under ``init``: SGD with momentum or AdamW."""
    kind, lr = weight_setting(args, init)
    if kind == "sgd":
        return torch.optim.SGD(net.parameters(), lr=lr, momentum=args.momentum)
    return torch.optim.AdamW(net.parameters(), lr=lr)


def run_job(
    args: argparse.Namespace, init: str, T_train: int, seed: int, figures: bool
) -> dict[str, Any]:
    """Train one decoder (init, T_train, seed) with ``Trainer.fit`` on one thread and evaluate
    it at every T_eval. With ``figures`` it also returns the test MSE at T_train after every
    epoch (off the clock; the learning curve), the reconstructions of the first test batch at the
    smallest T_eval and the per-node energy over inference at the largest.

    One thread per job whatever the machine, so a job's numbers do not depend on how many jobs
    run beside it (``--workers``)."""
    threads = torch.get_num_threads()
    if args.device == "cpu":
        torch.set_num_threads(1)
    try:
        return _run_job(args, init, T_train, seed, figures)
    finally:
        torch.set_num_threads(threads)


def _run_job(
    args: argparse.Namespace, init: str, T_train: int, seed: int, figures: bool
) -> dict[str, Any]:
    torch.manual_seed(seed)
    train_set, test_set = shared.load_data(args, seed=args.data_seed)
    test = test_set.flat().to(args.device)
    net = pc.compile(TOPOLOGY, seed=seed, device=args.device)
    learner = pc.PCLearner(
        net,
        init=init,
        T=T_train,
        lr_neurons=args.lr_neurons,
        clamp="generate",
        optimizer=make_optimizer(args, init, net),
        init_options=memory_options(args, seed) if init == "memory" else None,
        generator=torch.Generator(device=args.device).manual_seed(seed),
        algorithm=algorithm_of(args, init),
    )

    eval_batch = args.eval_batch or (args.batch_size if init == "null" else EVAL_BATCH)

    def evaluate(learner: pc.PCLearner) -> dict[str, float]:
        with evaluation_step(learner, test, args):
            mse = test_mse(learner, test, T_train, eval_batch)
        return {"test_mse": float("nan") if mse is None else mse}  # nan: diverged, a gap

    # the learning curve is drawn from the first seed's runs only: the others skip its cost
    recorder = EpochRecorder(evaluate if figures else None)
    trainer = Trainer(
        learner,
        train_set,
        None,
        batch_size=args.batch_size,
        epochs=args.epochs,
        seed=seed,
        callbacks=[recorder],
        progress=False,
    )
    trainer.fit()
    job: dict[str, Any] = {
        "init": init,
        "T_train": T_train,
        "seed": seed,
        "algorithm": learner.algorithm,
    }
    with evaluation_step(learner, test, args) as gamma_eval:
        job["evals"] = test_mses(learner, test, args.T_eval, eval_batch)
        if figures:
            batch = test[: args.batch_size]
            T_min, T_max = min(args.T_eval), max(args.T_eval)
            recon = learner.reconstruct({"image": batch}, T=T_min)["image"]
            job["recon"] = recon.detach().cpu()
            if init in ("memory", "zero") and T_train == max(args.T_train):
                result = learner.infer({"image": batch}, clamp={"image"}, T=T_max, trace=True)
                assert result.trace is not None
                job["trace"] = result.trace.detach().cpu()
    job |= {
        "curve": recorder.record.get("test_mse", []),
        "energy": recorder.record["energy_after"],
        "seconds": recorder.record["train_seconds"][-1],
        "gamma_eval": gamma_eval,
        "smm_total": learner.smm_total,
    }
    return job
