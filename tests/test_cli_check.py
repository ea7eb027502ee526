"""``pcgraph check``: exit codes, JSON keys and one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from pcgraph.cli import main

Topology = Callable[[str], Path]
JSON_KEYS = {
    "is_dag",
    "cycles",
    "roots",
    "unclamped_roots",
    "forward_init_possible",
    "reason",
    "recommended_init",
    "smm_per_update",
}


def check_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:  # type: ignore[type-arg]
    assert main(["check", *argv, "--json"]) == 0
    out = capsys.readouterr().out
    return json.loads(out)


def check_fails(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run a check that must fail; returns its stderr after checking it is one line."""
    assert main(["check", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err
    assert err.startswith("pcgraph check: error: ")
    assert err.count("\n") == 1 and err.endswith("\n")
    assert "Traceback" not in err
    return err


def test_loop_json(capsys: pytest.CaptureFixture[str], topology: Topology) -> None:
    result = check_json(capsys, str(topology("loop")))
    assert set(result) >= JSON_KEYS
    assert result["is_dag"] is False
    assert result["cycles"] == [["a", "b", "c"]]
    assert result["forward_init_possible"] is False
    assert "a → b → c → a" in result["reason"]
    assert result["recommended_init"] == "memory"
    assert result["roots"] == ["x"] and result["unclamped_roots"] == []


def test_mlp5_json(capsys: pytest.CaptureFixture[str], topology: Topology) -> None:
    result = check_json(capsys, str(topology("mlp5_fashion")))
    assert result["is_dag"] is True and result["cycles"] == []
    assert result["forward_init_possible"] is True
    assert result["recommended_init"] == "forward"
    assert result["smm_per_update"] == 2 * 8 + 4  # T = 8 steps, 4 hidden layers swept


def test_T_and_clamp_options(capsys: pytest.CaptureFixture[str], topology: Topology) -> None:
    path = str(topology("mlp5_fashion"))
    assert check_json(capsys, path, "--T", "3")["smm_per_update"] == 2 * 3 + 4
    # prediction clamps only x, so the sweep also fills y: 5 levels
    assert check_json(capsys, path, "--clamp", "predict")["smm_per_update"] == 16 + 5
    assert check_json(capsys, path, "--clamp", "x,h2,y")["clamp"] == ["x", "h2", "y"]
    assert check_json(capsys, path, "--init", "zero")["smm_per_update"] == 16


def test_decoder_generate_json(capsys: pytest.CaptureFixture[str], topology: Topology) -> None:
    result = check_json(capsys, str(topology("decoder4_fashion")), "--clamp", "generate")
    assert result["unclamped_roots"] == ["z"]
    assert result["memory_targets"] == ["z"]
    assert result["recommended_init"] == "memory"


def test_plain_text_summary(capsys: pytest.CaptureFixture[str], topology: Topology) -> None:
    assert main(["check", str(topology("loop"))]) == 0
    out = capsys.readouterr().out
    assert "not a DAG" in out and "a → b → c → a" in out
    assert "'auto' will use: memory" in out


PRIOR_YAML = """
name: gen_prior
nodes:
  - {name: z, shape: 4, prior: {mean: 0.5, precision: 2.0}}
  - {name: h, shape: 8, activation: tanh, precision: learnable}
  - {name: img, shape: 6, role: output}
edges:
  - {source: z, target: h, op: linear}
  - {source: h, target: img, op: linear}
"""


def test_priors_and_learned_precision_are_explained(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, topology: Topology
) -> None:
    path = tmp_path / "gen_prior.yaml"
    path.write_text(PRIOR_YAML)
    result = check_json(capsys, str(path))
    assert result["priors"] == {"z": {"mean": 0.5, "precision": 2.0}}
    assert result["learned_precision"] == ["h"]
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "prior on root z: ½·2·‖z − 0.5‖²" in out and "N(0.5, 1/2)" in out
    assert "learned precision on h" in out and "log w" in out
    # a graph without them says nothing of either
    assert main(["check", str(topology("mlp5_fashion"))]) == 0
    out = capsys.readouterr().out
    assert "prior on" not in out and "learned precision" not in out
    assert check_json(capsys, str(topology("mlp5_fashion")))["priors"] == {}


def test_a_networkx_prior_takes_the_schemas_defaults_and_names_a_bad_node() -> None:
    """A raw networkx graph is not validated before analysis: its prior dict gets the schema's
    defaults (precision 1), and a precision ≤ 0 is one SpecError naming the node."""
    import networkx as nx

    from pcgraph import analyze
    from pcgraph.errors import SpecError

    g = nx.DiGraph()
    g.add_node("z", prior={"mean": 0.5})
    g.add_node("x", role="input")
    g.add_edge("z", "x")
    assert analyze(g, "none").priors == {"z": {"mean": 0.5, "precision": 1.0}}
    g.nodes["z"]["prior"] = {"mean": 0.0, "precision": -1.0}
    with pytest.raises(SpecError, match=r"node 'z': prior .*greater than 0.*fix the node"):
        analyze(g, "none")


def test_valid_init_is_confirmed(capsys: pytest.CaptureFixture[str], topology: Topology) -> None:
    assert main(["check", str(topology("mlp5_fashion")), "--init", "forward"]) == 0
    assert "initialization 'forward' is valid here" in capsys.readouterr().out


def test_forward_init_on_unclamped_root_fails(
    capsys: pytest.CaptureFixture[str], topology: Topology
) -> None:
    err = check_fails(capsys, str(topology("dag_unclamped_root")), "--init", "forward")
    assert "context" in err


def test_broken_yaml_fails_with_the_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\nnodes: [\n  {name: x, shape: 3\n", encoding="utf-8")
    err = check_fails(capsys, str(path))
    assert "broken.yaml" in err and "YAML syntax error" in err and "line " in err


def test_invalid_spec_fails(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("nodes:\n- {name: x, shap: 3}\n", encoding="utf-8")
    err = check_fails(capsys, str(path))
    assert "nodes[0] (x).shap: unknown field" in err


def test_missing_file_fails(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for name in ("missing.yaml", "missing.txt"):
        err = check_fails(capsys, str(tmp_path / name))
        assert f"{name}: no such file" in err


def test_unknown_clamp_node_fails(capsys: pytest.CaptureFixture[str], topology: Topology) -> None:
    err = check_fails(capsys, str(topology("mlp5_fashion")), "--clamp", "x,label")
    assert "'label'" in err and "known nodes" in err


def test_unknown_init_fails(capsys: pytest.CaptureFixture[str], topology: Topology) -> None:
    assert "unknown initialization 'fwd'" in check_fails(
        capsys, str(topology("mlp5_fashion")), "--init", "fwd"
    )


def test_negative_T_fails(capsys: pytest.CaptureFixture[str], topology: Topology) -> None:
    assert "--T must be" in check_fails(capsys, str(topology("mlp5_fashion")), "--T", "-1")


def test_missing_command_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2


def test_console_script_is_wired(topology: Topology) -> None:
    exe = shutil.which("pcgraph")
    if exe is None:
        pytest.skip("the pcgraph console script is not installed (pip install -e .)")
    done = subprocess.run(
        [exe, "check", str(topology("mlp5_fashion"))],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "forward initialization is possible" in done.stdout
    assert "20 sequential matrix multiplications" in done.stdout


def test_check_runs_without_importing_torch() -> None:
    """The schema, the analysis and the CLI start without torch (3 s of a check's time)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from pcgraph.cli.main import main\n"
        "rc = main(['check', sys.argv[1]])\n"
        "assert rc == 0, rc\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    topo = Path(__file__).resolve().parent.parent / "topologies" / "alexnet_cifar10.yaml"
    proc = subprocess.run(
        [sys.executable, "-c", code, str(topo)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("command", ["check", "train"])
def test_cli_prints_no_warning(command: str, tmp_path: Path) -> None:
    """No command prints a warning, not even a deprecation warning (shown here with
    PYTHONWARNINGS=default): ``train`` compiles, which once imported torch_geometric and its
    ``torch.jit.script`` warnings."""
    import os
    import sys

    topo = Path(__file__).resolve().parent.parent / "topologies" / "mlp5_fashion.yaml"
    argv = [sys.executable, "-m", "pcgraph", command, str(topo)]
    if command == "train":
        argv += ["--embedded", "--train-size", "20", "--test-size", "10", "--batch-size", "10"]
        argv += ["--T", "1", "--out", str(tmp_path / "run"), "--no-progress"]
    env = dict(os.environ, PYTHONWARNINGS="default")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr, done.stderr
