"""Bounds instead of hangs (issue 29): T and depth beyond the documented limits of
:mod:`pcgraph.limits` are one ConfigError with an estimate, before any work (weights beyond the
memory are refused by compile: test_bad_inputs); ``mlp(784)`` names the fix; ``cuda_graph`` on a
CPU is an error; under ``tol`` StepMetrics reports the inference steps actually run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import pcgraph as pc
from pcgraph import limits
from pcgraph.cli.main import main
from pcgraph.errors import ConfigError, SpecError

ROOT = Path(__file__).resolve().parent.parent
MLP = str(ROOT / "topologies" / "mlp5_fashion.yaml")
HUGE_T = 10**9


def _net() -> pc.PCNetwork:
    return pc.compile(pc.mlp([4, 8, 3]), seed=0)


def _batch(b: int = 6) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    y = torch.nn.functional.one_hot(torch.arange(b) % 3, 3).float()
    return {"x": torch.randn(b, 4, generator=g), "y": y}


def test_pclearner_refuses_a_huge_T_with_an_estimate() -> None:
    with pytest.raises(ConfigError) as info:
        pc.PCLearner(_net(), init="forward", T=HUGE_T)
    msg = str(info.value)
    # the estimate: 10⁹ steps × the 20 µs lower bound per step = 20,000 s ≈ 5.6 hours
    assert "T = 1,000,000,000" in msg and "100,000" in msg and "5.6 hours" in msg


def test_the_limit_itself_is_allowed_and_a_call_override_is_bounded() -> None:
    learner = pc.PCLearner(_net(), init="forward", T=limits.MAX_STEPS)
    assert learner.T == limits.MAX_STEPS
    with pytest.raises(ConfigError, match="T = 100,001"):
        learner.infer(_batch(), T=limits.MAX_STEPS + 1)


@pytest.mark.parametrize(
    "argv",
    [
        ["train", MLP, "--embedded", "--T", str(HUGE_T), "--epochs", "0"],
        ["evaluate", "no-such-checkpoint.pt", "--T", str(HUGE_T)],
        ["flow", "no-such-checkpoint.pt", "--T", str(HUGE_T)],
        ["check", MLP, "--T", str(HUGE_T)],
    ],
)
def test_cli_refuses_a_huge_T_before_any_work(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = ["--out", str(tmp_path / "run")] if argv[0] == "train" else []
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err
    assert "--T = 1,000,000,000" in err and "100,000" in err and "hours" in err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_residual_mlp_too_deep_is_refused_with_a_time_estimate() -> None:
    depth = limits.MAX_LAYERS + 1
    with pytest.raises(ConfigError) as info:
        pc.residual_mlp(depth, 4)
    msg = str(info.value)
    assert "residual_mlp" in msg and f"{depth:,} layers" in msg and "10,000" in msg
    assert "minutes" in msg or "seconds" in msg


def test_mlp_and_decoder_too_deep_are_refused() -> None:
    sizes = [4] * (limits.MAX_LAYERS + 2)  # one layer more than the limit
    for builder in (pc.mlp, pc.decoder):
        with pytest.raises(ConfigError, match=r"10,001 layers is above the limit of 10,000"):
            builder(sizes)


def test_mlp_of_an_int_names_the_fix() -> None:
    with pytest.raises(SpecError, match=r"mlp: sizes must be a list .* mlp\(\[784, 256, 10\]\)"):
        pc.mlp(784)  # type: ignore[arg-type]
    with pytest.raises(SpecError, match=r"decoder: sizes must be a list"):
        pc.decoder(256)  # type: ignore[arg-type]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the error is for CPU-only machines")
def test_cuda_graph_on_a_cpu_network_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"cuda_graph=True .* cpu; compile it with device='cuda'"):
        pc.PCLearner(_net(), init="forward", cuda_graph=True)


@pytest.mark.parametrize("schedule", ["standard", "incremental"])
def test_step_metrics_report_the_steps_run_under_tol(schedule: str) -> None:
    """The energy trace has one row per step run plus the start, and the SMM count is
    2 per step (one linear op per pass) + the forward sweep (1 level: h1 of x → h1 → y)."""
    T = 200
    learner = pc.PCLearner(_net(), init="forward", T=T, tol=1e-2, schedule=schedule)
    metrics = learner.train_step(_batch(), trace=True)
    assert metrics.trace is not None
    assert 1 <= metrics.steps < T  # a loose tol on a 3-layer MLP stops long before 200 steps
    assert metrics.trace.shape[0] == metrics.steps + 1
    assert metrics.smm == 2 * metrics.steps + 1
    assert metrics.to_dict()["steps"] == metrics.steps
    full = pc.PCLearner(_net(), init="forward", T=3, schedule=schedule).train_step(_batch())
    assert full.steps == 3
