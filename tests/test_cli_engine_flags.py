"""The CLI reaches every engine option (issue 29): the flags of PCLearner and of the memory
initialization, the paper-setting defaults, ``check --init X`` costing X, ``flow`` stills with
``--clamp``/``--init``, and the run record in ``options.json``. Expectations come from the
engine's signatures, the examples' documented setting and the SMM formula, not from output."""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch

import pcgraph
from pcgraph.cli.main import build_parser, main
from pcgraph.cli.options import PAPER_SETTING, TRAIN_DEFAULTS, read_options
from pcgraph.cli.train import build_learner
from pcgraph.cli.validate import check_train
from pcgraph.errors import ConfigError
from pcgraph.init.memory import MemoryInit
from pcgraph.schema import GraphSpec
from pcgraph.solvers import SOLVERS

ROOT = Path(__file__).resolve().parent.parent
MLP = str(ROOT / "topologies" / "mlp5_fashion.yaml")


def _train_args(*extra: str) -> argparse.Namespace:
    return build_parser().parse_args(["train", MLP, *extra])


def _learner(*extra: str) -> Any:
    opts, _ = read_options(_train_args(*extra))
    check_train(opts)
    return build_learner(GraphSpec.from_yaml(MLP), opts)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return rc, captured.out, captured.err


# --- 1. flags of every engine option ------------------------------------------------------------
def test_every_registered_solver_is_a_choice_of_neuron_optimizer() -> None:
    for name in SOLVERS.names():
        assert _learner("--neuron-optimizer", name).neuron_optimizer == name


def test_schedule_tol_step_rule_reach_pclearner() -> None:
    learner = _learner("--schedule", "incremental", "--tol", "1e-3", "--step-rule", "backtrack")
    assert (learner.schedule, learner.tol, learner.step_rule) == ("incremental", 1e-3, "backtrack")


def test_algorithm_reaches_pclearner_and_a_bad_one_is_refused() -> None:
    assert _learner("--algorithm", "epc").algorithm == "epc"
    assert _learner().algorithm == "pc"
    opts, _ = read_options(_train_args("--algorithm", "spc"))
    with pytest.raises(ConfigError, match=r"--algorithm"):
        check_train(opts)


def test_memory_flags_reach_memoryinit() -> None:
    learner = _learner(
        "--init", "memory", "--patterns", "16", "--heads", "2", "--embed-dim", "8",
        "--beta", "0.5", "--mem-lr", "0.01", "--mem-steps", "3", "--mem-loss", "sweep",
        "--mem-linear",
    )  # fmt: skip
    memory = learner.initializer
    assert isinstance(memory, MemoryInit)
    got = {k: getattr(memory, k) for k in ("patterns", "heads", "embed_dim", "beta", "lr")}
    assert got == {"patterns": 16, "heads": 2, "embed_dim": 8, "beta": 0.5, "lr": 0.01}
    assert (memory.steps, memory.loss, memory.linear) == (3, "sweep", True)


def test_memory_defaults_are_memoryinits() -> None:
    params = inspect.signature(MemoryInit.__init__).parameters
    keys = {"patterns": "patterns", "heads": "heads", "embed_dim": "embed_dim", "beta": "beta"}
    keys |= {"mem_lr": "lr", "mem_steps": "steps", "mem_loss": "loss", "mem_linear": "linear"}
    for option, keyword in keys.items():
        assert TRAIN_DEFAULTS[option] == params[keyword].default, option


def test_memory_flag_without_a_memory_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["train", MLP, "--embedded", "--init", "forward", "--patterns", "8", "--out", str(out)]
    rc, _, err = run(argv, capsys)
    assert rc == 2 and "--patterns" in err and "--init memory" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="the error is for machines without CUDA")
def test_cuda_graph_without_cuda_names_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _, err = run(["train", MLP, "--embedded", "--cuda-graph", "--out", str(tmp_path)], capsys)
    assert rc == 2 and "--cuda-graph" in err and "CUDA is not available" in err
    with pytest.raises(ConfigError, match="--cuda-graph"):
        check_train(read_options(_train_args("--cuda-graph"))[0])


def test_defaults_are_the_examples_paper_setting() -> None:
    """The CLI's optimisation defaults equal the setting the examples (and docs/results.md)
    train with: examples/_shared.py add_common_args."""
    path = ROOT / "examples" / "_shared.py"
    spec = importlib.util.spec_from_file_location("pcgraph_examples_shared_defaults", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    parser = argparse.ArgumentParser()
    module.add_common_args(parser, out="x")
    examples = vars(parser.parse_args([]))
    for key in ("batch_size", "lr", "weight_decay", "lr_neurons"):
        assert TRAIN_DEFAULTS[key] == PAPER_SETTING[key] == examples[key], key
    helps = {a.dest: a.help or "" for a in _subparser("train")._actions}
    assert all("paper setting" in helps[k] for k in PAPER_SETTING)


def _subparser(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser: argparse.ArgumentParser = sub.choices[name]
    return parser


# --- 2. check --init X reports X's cost ---------------------------------------------------------
@pytest.mark.parametrize(("init", "K", "init_smm"), [("hybrid", 2, 2), ("hybrid", 1, 1)])
def test_check_costs_the_named_init(
    init: str, K: int, init_smm: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """mlp5 under clamp {x, y}: 2 SMMs per inference step, + hybrid's sweep of depth K."""
    T = 2
    argv = ["check", MLP, "--init", init, "--K", str(K), "--T", str(T), "--json"]
    rc, out, _ = run(argv, capsys)
    assert rc == 0 and json.loads(out)["smm_per_update"] == 2 * T + init_smm
    rc, out, _ = run(argv[:-1], capsys)
    assert f"with init '{init}' (K={K}): {2 * T + init_smm} sequential" in out


# --- 3 and 6. flow stills, --clamp/--init; the run record --------------------------------------
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli_flags") / "run"
    argv = ["train", MLP, "--embedded", "--init", "forward", "--T", "1", "--epochs", "1"]
    argv += ["--train-size", "20", "--test-size", "10", "--batch-size", "20"]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    return out


@pytest.mark.parametrize(("suffix", "magic"), [(".png", b"\x89PNG"), (".svg", b"<?xml")])
def test_flow_writes_stills_with_clamp_and_init(
    run_dir: Path, suffix: str, magic: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    still = run_dir / f"flow{suffix}"
    argv = ["flow", str(run_dir / "checkpoint.pt"), "-o", str(still), "-n", "2", "--T", "2"]
    rc, _, err = run([*argv, "--clamp", "predict", "--init", "zero"], capsys)
    assert rc == 0, err
    assert still.read_bytes().startswith(magic)


def test_flow_clamp_of_a_node_without_data_is_named(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["flow", str(run_dir / "checkpoint.pt"), "-o", str(tmp_path / "f.png"), "-n", "2"]
    rc, _, err = run([*argv, "--clamp", "h2"], capsys)
    assert rc == 2 and "--clamp h2" in err and "h2" in err.split("no data for", 1)[1]


def test_options_json_records_versions_commit_and_machine(run_dir: Path) -> None:
    env = json.loads((run_dir / "options.json").read_text())["environment"]
    assert env["pcgraph"] == pcgraph.__version__
    assert env["torch"] == torch.__version__
    assert env["python"] == platform.python_version()
    assert env["device"] == "cpu" and env["cpu"]
    inside_git = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--git-dir"], capture_output=True, check=False
    )
    if inside_git.returncode == 0:
        commit = env["git_commit"]
        assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", commit), commit
        known = subprocess.run(
            ["git", "-C", str(ROOT), "cat-file", "-e", commit.split("+")[0] + "^{commit}"],
            check=False,
        )
        assert known.returncode == 0


def test_evaluate_restores_a_run_with_its_record(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = run(["evaluate", str(run_dir / "checkpoint.pt"), "--test-size", "10"], capsys)
    assert rc == 0, err
    assert 0 <= json.loads(out)["test_accuracy"] <= 1
