"""The example scripts run end to end (--quick) and write the results they document.

Each script is imported from examples/ by path and its ``main([...])`` run in-process on the
embedded FashionMNIST subset. SMM expectations are hand-computed for mlp5 (x → h1 … h4 → y) with
x and y clamped in training: a full forward sweep fills h1..h4 (4 sequential matmuls), hybrid(K=2)
fills h1, h2 (2), average / null / zero / random cost nothing — except on the first batch, where
average, hybrid and null have nothing stored yet and fall back to a forward sweep (4). Backprop on
the L = 5-layer chain costs 2L − 1 = 9 per update.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

import pcgraph as pc
from pcgraph.errors import EnergyError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

FORWARD_SWEEP = 4  # h1..h4 of mlp5
HYBRID_K2 = 2  # h1, h2
BP_MLP5 = 9  # 2L − 1, L = 5
MEMORY_RETRIEVAL = 3  # o·Q, then ·Kᵀ, then ·V


def load_example(name: str) -> ModuleType:
    """Import an example as ``python examples/NAME.py`` would run it: with its own folder on
    ``sys.path``, where it finds ``_shared``."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    key = f"pcgraph_examples_{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    return module


def run_quick(name: str, out: Path, *extra: str) -> dict[str, Any]:
    module = load_example(name)
    assert module.main(["--quick", "--out", str(out), "--no-progress", *extra]) == 0
    return json.loads((out / "results.json").read_text())


def expected_smm(init: str, T: int, step: int) -> int:
    """SMMs of update ``step`` (0-based) of PC on mlp5 with init ``init``."""
    if init == "forward":
        return 2 * T + FORWARD_SWEEP
    if init in ("average", "hybrid", "null") and step == 0:
        return 2 * T + FORWARD_SWEEP
    if init == "hybrid":
        return 2 * T + HYBRID_K2
    return 2 * T  # average, null after the first batch; zero, random


def check_accuracy_run(run: dict[str, Any], epochs: int) -> None:
    acc = run["test_accuracy"]
    assert len(acc) == epochs == len(run["smm_total"]) == len(run["train_seconds"])
    assert all(0.0 <= a <= 1.0 for a in acc)
    assert all(math.isfinite(s) and s >= 0 for s in run["train_seconds"])
    assert run["smm_total"] == sorted(run["smm_total"])  # cumulative
    assert run["updates"] > 0


def test_classification_quick(tmp_path: Path) -> None:
    data = run_quick("classification", tmp_path)
    epochs = data["config"]["epochs"]
    for key in ("runs", "summary", "target", "bp_smm_per_update", "n_train", "n_test", "config"):
        assert key in data
    assert data["bp_smm_per_update"] == BP_MLP5
    assert {r["method"] for r in data["runs"]} == {"bp", "forward", "average", "hybrid"}
    for run in data["runs"]:
        check_accuracy_run(run, epochs)
        for key in ("target_reached", "smm_to_target", "seconds_to_target", "smm_per_update"):
            assert key in run
        if run["method"] == "bp":
            assert run["smm_per_update"] == BP_MLP5
            assert run["smm_total"][-1] == BP_MLP5 * run["updates"]
            continue
        T, init, n = run["T"], run["method"], run["updates"]
        assert run["smm_per_step"] == [expected_smm(init, T, s) for s in range(3)]
        assert run["smm_per_update"] == expected_smm(init, T, 1)
        assert run["smm_total"][-1] == sum(expected_smm(init, T, s) for s in range(n))
        assert run["stream_aligned"] == (init in ("average", "hybrid"))
        assert all(math.isfinite(e) and e >= 0 for e in run["energy_after"])
    for row in data["summary"]:
        assert 0.0 <= row["final_accuracy_mean"] <= row["best_accuracy_mean"] <= 1.0
    assert (tmp_path / "accuracy_curves.png").stat().st_size > 0
    assert (tmp_path / "accuracy_vs_smm.png").stat().st_size > 0


def test_first_reaching() -> None:
    shared = load_example("_shared")
    record = {"test_accuracy": [0.5, 0.81, 0.9], "smm_total": [10, 20, 30]}
    record["train_seconds"] = [1.0, 2.0, 3.0]
    hit = shared.first_reaching(record, 0.8)
    assert hit["smm_to_target"] == 20 and hit["epochs_to_target"] == 2
    assert hit["seconds_to_target"] == 2.0
    assert shared.first_reaching(record, 0.95)["target_reached"] is False


def test_init_comparison_quick(tmp_path: Path) -> None:
    data = run_quick("init_comparison", tmp_path)
    cfg = data["config"]
    inits, Ts = cfg["inits"], cfg["T"]
    assert set(inits) == {"random", "zero", "null", "forward", "average", "hybrid"}
    assert {(r["init"], r["T"]) for r in data["summary"]} == {(i, t) for i in inits for t in Ts}
    for row in data["summary"]:
        assert 0.0 <= row["best_accuracy_mean"] <= 1.0
        assert row["best_accuracy_std"] >= 0.0
        assert row["smm_per_update"] == expected_smm(row["init"], row["T"], 1)
    for run in data["runs"]:
        check_accuracy_run(run, cfg["epochs"])
        n = run["updates"]
        want = sum(expected_smm(run["method"], run["T"], s) for s in range(n))
        assert run["smm_total"][-1] == want
    assert (tmp_path / "accuracy_vs_T.png").stat().st_size > 0


def test_cyclic_graph_quick(tmp_path: Path) -> None:
    data = run_quick("cyclic_graph", tmp_path)
    assert data["forward_init_possible"] is False
    cfg = data["config"]
    assert {r["init"] for r in data["summary"]} == {"memory", "zero", "random"}
    for run in data["runs"]:
        check_accuracy_run(run, cfg["epochs"])
        assert len(run["energy_before"]) == len(run["energy_after"]) == cfg["epochs"]
        assert all(math.isfinite(e) and e >= 0 for e in run["energy_before"] + run["energy_after"])
        T = run["T"]
        # memory: one retrieval softmax(β (o Q + b) Kᵀ) V for g1..g4 = 3 sequential matmuls
        # (o·Q, ·Kᵀ, ·V); y is clamped in training, so no forward sweep follows. zero/random: 0.
        init_cost = MEMORY_RETRIEVAL if run["method"] == "memory" else 0
        assert run["smm_per_update"] == 2 * T + init_cost
        # the first update has no fitted memory yet (targets start at 0): no retrieval there
        first = 2 * T if run["method"] == "memory" else 2 * T + init_cost
        assert run["smm_total"][-1] == first + (run["updates"] - 1) * (2 * T + init_cost)
    assert (tmp_path / "cyclic_curves.png").stat().st_size > 0


def test_decoder_generation_quick(tmp_path: Path) -> None:
    data = run_quick("decoder_generation", tmp_path)
    assert data["results"]
    inits = set(data["config"]["inits"])
    for row in data["results"]:
        for key in ("init", "T_train", "T_eval", "test_mse"):
            assert key in row
        assert row["init"] in inits
        assert math.isfinite(row["test_mse"]) and 0.0 <= row["test_mse"] <= 1.0
    assert {r["init"] for r in data["results"]} == inits


@pytest.mark.slow  # ~10-20 s: keeps the default run within ~5 minutes on 2 cores
def test_decoder_generation_numbers_do_not_depend_on_the_workers(tmp_path: Path) -> None:
    """Each run is one job on one thread: run in place or two side by side in worker processes,
    every (init, T_train, seed, T_eval) gives the same MSE; the table's cells are the means of
    the seeds' rows."""
    extra = ("--seeds", "0,1", "--inits", "memory,zero")
    alone = run_quick("decoder_generation", tmp_path / "one", "--workers", "1", *extra)
    pool = run_quick("decoder_generation", tmp_path / "two", "--workers", "2", *extra)

    def numbers(data: dict[str, Any]) -> list[tuple[Any, ...]]:  # rows without their timings
        keys = ("init", "T_train", "seed", "T_eval", "test_mse", "smm_total")
        return [tuple(r[k] for k in keys) for r in data["results"]]

    assert numbers(pool) == numbers(alone)
    assert {r["seed"] for r in alone["results"]} == {0, 1}
    for cell in alone["summary"]:
        rows = [
            r["test_mse"]
            for r in alone["results"]
            if (r["init"], r["T_train"], r["T_eval"])
            == (cell["init"], cell["T_train"], cell["T_eval"])
        ]
        assert cell["per_seed"] == rows and len(rows) == 2
        assert cell["test_mse_mean"] == pytest.approx(sum(rows) / 2)


def test_label_to_image_quick(tmp_path: Path) -> None:
    data = run_quick("label_to_image", tmp_path)
    cfg = data["config"]
    taus = ["0", *cfg["taus"]]
    summary = data["summary"]
    assert list(summary["recognition"]) == taus
    for entry in [*summary["recognition"].values(), summary["discriminative"]]:
        assert 0.0 <= entry["overall_mean"] <= 1.0
        assert len(entry["per_class_mean"]) == 10
        assert all(0.0 <= v <= 1.0 for v in entry["per_class_mean"])
        # 10 classes of equal size: the overall rate is the mean of the per-class rates
        assert entry["overall_mean"] == pytest.approx(sum(entry["per_class_mean"]) / 10)
    (run,) = data["runs"]
    assert 0.1 < run["classifier_test_accuracy"] <= 1.0
    assert set(run["residual_scales"]) == {"h1", "h2"}
    assert all(math.isfinite(v) and v > 0 for v in run["residual_scales"].values())
    assert run["discriminative"]["T"] == cfg["T_disc"]
    assert (tmp_path / "generated.png").stat().st_size > 0
    assert (tmp_path / "discriminative.png").stat().st_size > 0


def test_label_to_image_sampler_is_the_forward_sweep_without_noise() -> None:
    """With every scale 0 the ancestral sampler is the forward sweep from the clamped label: the
    image equals the Bernoulli mean ``predict`` holds the free image at; with noise on the hidden
    nodes the images of one class differ."""
    module = load_example("label_to_image")
    net = pc.compile(module.GENERATOR, seed=0, dtype=torch.float64)
    learner = pc.PCLearner(net, init="forward", T=2)
    labels = torch.tensor([0, 3, 3, 9])
    one_hot = torch.nn.functional.one_hot(labels, 10).double()
    gen = torch.Generator().manual_seed(0)
    proto = module.sample(learner, labels, {"h1": 0.0, "h2": 0.0}, gen)
    assert torch.allclose(proto, learner.predict({"y": one_hot})["image"])
    assert torch.equal(proto[1], proto[2])
    noisy = module.sample(learner, labels, {"h1": 0.5, "h2": 0.5}, gen)
    assert not torch.allclose(noisy[1], noisy[2])
    assert float(noisy.min()) >= 0.0 and float(noisy.max()) <= 1.0


def test_decoder_stable_step_size_is_one_over_the_largest_curvature() -> None:
    """Linear 2-node chain z → image with image clamped and z free: E = ½ Σ_b ‖img_b − W z_b − c‖²,
    whose Hessian over z is WᵀW per sample, so λ_max = σ_max(W)². Gradient descent with
    γ = 1/λ_max never raises E; with γ = 2.5/λ_max (past the limit 2/λ_max) it blows up."""
    module = load_example("decoder_generation")
    net = pc.compile(pc.schema.decoder([4, 6], activation="identity"), dtype=torch.float64, seed=0)
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() == 2:
                p.mul_(3.0)  # λ_max well above 1, so the default γ = 0.1 matters
    weight = next(p for p in net.parameters() if p.dim() == 2).detach()
    lam_true = float(torch.linalg.matrix_norm(weight, ord=2) ** 2)
    learner = pc.PCLearner(net, init="zero", clamp="generate", T=1)
    images = torch.rand(8, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    lam = module.largest_curvature(learner, images, iters=200)
    assert abs(lam - lam_true) < 1e-6 * lam_true, (lam, lam_true)
    gamma = module.stable_step_size(learner, images, gamma=10.0)
    # 20 iterations (the default): the Rayleigh quotient approaches λ_max from below
    assert 1 / lam_true - 1e-12 <= gamma <= 1.05 / lam_true, (gamma, 1 / lam_true)
    assert module.stable_step_size(learner, images, gamma=1e-3) == 1e-3  # γ below: kept

    def energies(step: float) -> torch.Tensor:
        learner.lr_neurons = step
        trace = learner.infer({"image": images}, clamp={"image"}, T=64, trace=True).trace
        assert trace is not None
        return trace.sum(1)

    stable = energies(gamma)
    assert torch.all(stable[1:] <= stable[:-1] + 1e-9)
    with pytest.raises(EnergyError, match="diverged"):  # the engine's > 1000× growth check
        energies(2.5 / lam_true)


def test_decoder_full_trains_memory_by_epc_and_the_others_by_pc() -> None:
    """Each init's own best setting (docs/results.md §4): with --full, memory by ePC with the
    weights' AdamW at 5e-4 and the memory's Adam at 2e-3, the others by standard PC with their
    own optimizers; without --full every init by PC; --algorithm and --lr / --mem-lr override."""
    module = load_example("decoder_generation")
    dec = load_example("_decoder")
    full = module.parse_args(["--full"])
    assert full.epochs == 4
    assert dec.algorithm_of(full, "memory") == "epc"
    assert dec.weight_setting(full, "memory") == ("adamw", 5e-4)
    assert dec.memory_options(full, 0)["lr"] == 2e-3
    for init in ("zero", "random", "null"):
        assert dec.algorithm_of(full, init) == "pc"
        assert dec.weight_setting(full, init) == dec.WEIGHTS[init]
    main = module.parse_args([])
    assert {dec.algorithm_of(main, i) for i in ("memory", "zero", "random", "null")} == {"pc"}
    assert dec.weight_setting(main, "memory") == dec.WEIGHTS["memory"]
    assert dec.memory_options(main, 0)["lr"] == 1e-2
    epc = module.parse_args(["--algorithm", "epc"])
    assert dec.algorithm_of(epc, "zero") == "epc"
    assert dec.weight_setting(epc, "zero") == ("adamw", 1e-3)
    assert dec.memory_options(epc, 0)["lr"] == 2e-3
    pc_full = module.parse_args(["--full", "--algorithm", "pc", "--mem-lr", "5e-3", "--lr", "1e-4"])
    assert dec.algorithm_of(pc_full, "memory") == "pc"
    assert dec.memory_options(pc_full, 0)["lr"] == 5e-3
    assert dec.weight_setting(pc_full, "memory") == ("sgd", 1e-4)
