"""Bad command-line input: one clear error (exit 2) that names the option and the fix, before
any work starts; never a traceback. Each expectation is the option's documented range."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pcgraph.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
MLP = str(ROOT / "topologies" / "mlp5_fashion.yaml")


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


TRAIN_CASES = [
    (["--epochs", "-1"], "--epochs must be ≥ 1"),
    (["--epochs", "0"], "--epochs must be ≥ 1"),
    (["--T", "0"], "--T must be ≥ 1"),
    (["--batch-size", "0"], "--batch-size must be ≥ 1"),
    (["--lr", "-1"], "--lr must be a finite number > 0"),
    (["--lr", "nan"], "--lr must be a finite number > 0"),
    (["--lr", "inf"], "--lr must be a finite number > 0"),
    (["--lr-neurons", "0"], "--lr-neurons must be a finite number > 0"),
    (["--weight-decay", "-0.1"], "--weight-decay must be a finite number ≥ 0"),
    (["--train-size", "0"], "--train-size must be ≥ 1"),
    (["--train-size", "-5"], "--train-size must be ≥ 1"),
    (["--test-size", "0"], "--test-size must be ≥ 1"),
    (["--K", "-1"], "--K must be ≥ 0"),
    (["--seed", "-3"], "--seed must be ≥ 0"),
    (["--neuron-optimizer", "rmsprop"], "--neuron-optimizer 'rmsprop' is not one of"),
    (["--task", "regression"], "regression is not a task"),
    (["--data", "cifar"], "--data 'cifar' is not one of"),
    (["--device", "gpu"], "--device 'gpu'"),
    (["--device", "mps"], "--device 'mps': pcgraph runs on cpu or cuda"),
]


@pytest.mark.parametrize(("extra", "expected"), TRAIN_CASES)
def test_train_rejects_bad_numbers_and_choices_up_front(
    extra: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    rc, err = run(["train", MLP, "--embedded", "--out", str(out), *extra], capsys)
    assert rc == 2 and expected in err, err
    assert not (out / "checkpoint.pt").exists()  # nothing ran


def test_train_unwritable_out_fails_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # /sys refuses new folders even to root (CI runs as root, where chmod would not bite)
    target = Path("/sys/pcgraph-test-out")
    if not Path("/sys").is_dir():
        target = tmp_path / "file-not-folder"
        target.write_text("x")
    rc, err = run(["train", MLP, "--embedded", "--out", str(target / "run")], capsys)
    assert rc == 2 and "--out" in err and ("cannot write there" in err or "is a file" in err)


def test_train_out_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    rc, err = run(["train", MLP, "--embedded", "--out", str(f)], capsys)
    assert rc == 2 and "is a file, not a folder" in err
    rc, err = run(["train", MLP, "--embedded", "--out", str(f / "sub")], capsys)
    assert rc == 2 and "--out" in err


def test_resume_without_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = run(["train", MLP, "--embedded", "--out", str(tmp_path), "--resume"], capsys)
    assert rc == 2 and "--resume" in err and "does not exist" in err


@pytest.mark.parametrize(
    ("output", "expected"),
    [("graph.bmpx", "unknown file type '.bmpx'"), ("noext", "unknown file type '(none)'")],
)
def test_draw_checks_the_output_path(
    output: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, err = run(["draw", MLP, "-o", str(tmp_path / output)], capsys)
    assert rc == 2 and expected in err


def test_draw_output_that_is_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "pics.png"
    folder.mkdir()
    rc, err = run(["draw", MLP, "-o", str(folder)], capsys)
    assert rc == 2 and "is a folder" in err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["evaluate", "ckpt.pt", "--device", "gpu"], "--device 'gpu'"),
        (["evaluate", "ckpt.pt", "--T", "-2"], "--T must be ≥ 0"),
        (["evaluate", "ckpt.pt", "--test-size", "0"], "--test-size must be ≥ 1"),
        (["reconstruct", "ckpt.pt", "-n", "0"], "-n must be ≥ 1"),
        (["reconstruct", "ckpt.pt", "-o", "r.txt"], "unknown file type '.txt'"),
    ],
)
def test_evaluate_and_reconstruct_options(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, err = run(argv, capsys)
    assert rc == 2 and expected in err


def test_cuda_on_a_machine_without_it(capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    rc, err = run(["evaluate", "ckpt.pt", "--device", "cuda"], capsys)
    assert rc == 2 and "CUDA is not available" in err


def test_broken_pipe_is_quiet() -> None:
    # `pcgraph check --json | head -c 1`: the reader closes early; no traceback, exit 0
    cmd = f"{sys.executable} -m pcgraph check {MLP} --json | head -c 1"
    proc = subprocess.run(
        ["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, timeout=120
    )
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr
    assert proc.stdout == "{"


def test_debug_flag_prints_the_chain(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["check", "nope.yaml", "--debug"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" in err and "no such file" in err


# --- the Python API ------------------------------------------------------------------------
def _mlp_learner(**kwargs: object) -> object:
    import pcgraph as pc

    net = pc.compile(pc.mlp([6, 5, 3], activation="tanh"), seed=0)
    return net, pc.PCLearner(net, init="forward", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"T": 2.5}, "T (inference steps) must be a whole number"),
        ({"T": -1}, "must be ≥ 0"),
        ({"T": True}, "whole number"),
        ({"lr_neurons": float("nan")}, "lr_neurons (γ) must be a finite number > 0"),
        ({"lr_neurons": -0.1}, "finite number > 0"),
        ({"neuron_optimizer": "rmsprop"}, "neuron_optimizer 'rmsprop' is not one of"),
        ({"grad_mode": "finite_diff"}, "grad_mode 'finite_diff' is not one of: local, autograd"),
    ],
)
def test_learner_options_are_checked(kwargs: dict[str, object], expected: str) -> None:
    from pcgraph.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        _mlp_learner(**kwargs)
    assert expected in str(info.value)


def test_optimizer_over_another_network_is_refused() -> None:
    import torch

    import pcgraph as pc
    from pcgraph.errors import ConfigError

    other = pc.compile(pc.mlp([6, 5, 3]), seed=1)
    net = pc.compile(pc.mlp([6, 5, 3]), seed=0)
    with pytest.raises(ConfigError, match="holds none of this network's parameters"):
        pc.PCLearner(net, optimizer=torch.optim.AdamW(other.parameters()))
    extra = torch.nn.Parameter(torch.zeros(3))  # the user's own tensor beside the network's
    pc.PCLearner(net, optimizer=torch.optim.AdamW([*net.parameters(), extra]))


@pytest.mark.parametrize(
    ("x", "expected"),
    [
        ([[0.0] * 6], "is a list, not a tensor"),
        ("zeros", "is a str, not a tensor"),
        ("empty", "an empty batch"),
        ("nan", "holds NaN or infinite values (first in sample 1)"),
    ],
)
def test_bad_data_is_named_at_its_node(x: object, expected: str) -> None:
    import torch

    from pcgraph.errors import ClampError

    _, learner = _mlp_learner(T=2)
    if x == "empty":
        x = torch.zeros(0, 6)
    elif x == "nan":
        x = torch.zeros(3, 6)
        x[1, 4] = float("nan")
    y = torch.zeros(3, 3)
    for call in (
        lambda: learner.train_step({"x": x, "y": y}),  # type: ignore[attr-defined]
        lambda: learner.predict({"x": x}),  # type: ignore[attr-defined]
    ):
        with pytest.raises(ClampError) as info:
            call()
        assert "node 'x'" in str(info.value) and expected in str(info.value)


def test_divergence_is_caught_before_the_energy_overflows() -> None:
    import torch

    from pcgraph.errors import EnergyError

    _, learner = _mlp_learner(T=8, lr_neurons=50.0)
    g = torch.Generator().manual_seed(0)
    data = {"x": torch.randn(4, 6, generator=g), "y": torch.randn(4, 3, generator=g) * 5}
    with pytest.raises(EnergyError, match=r"diverged: the energy (grew from|became non-finite)"):
        learner.train_step(data)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"dtype": "int64"}, "needs floating-point states"),
        ({"device": "gpu"}, "device='gpu' is not a device"),
        ({"device": "mps"}, "pcgraph runs on 'cpu' or 'cuda'"),
    ],
)
def test_compile_checks_device_and_dtype(kwargs: dict[str, object], expected: str) -> None:
    import torch

    import pcgraph as pc
    from pcgraph.errors import ConfigError

    if kwargs.get("dtype") == "int64":
        kwargs = {"dtype": torch.int64}
    with pytest.raises(ConfigError, match=expected):
        pc.compile(pc.mlp([4, 3, 2]), **kwargs)  # type: ignore[arg-type]


def test_compile_refuses_an_edge_larger_than_memory() -> None:
    import pcgraph as pc
    from pcgraph.errors import ConfigError

    # 200 000 × 200 000 float32 weights = 149 GiB: refused before anything is allocated
    with pytest.raises(ConfigError, match=r"edge x → h1 \(40,000,000,000 weights\)"):
        pc.compile(pc.mlp([200_000, 200_000, 2]))


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda pc: pc.NodeSpec(name="a", shape=-1), "NodeSpec('a'): shape: shape [-1]"),
        (lambda pc: pc.NodeSpec(name="a", shape=2, colour="red"), "colour: unknown field"),
        (lambda pc: pc.EdgeSpec(source="a"), "EdgeSpec('a'): target: required field is missing"),
        (
            lambda pc: pc.GraphSpec(
                name="g",
                nodes=[pc.NodeSpec(name="a", shape=2)],
                edges=[{"source": "a", "target": "b"}],
            ),
            "target 'b' is not a node",
        ),
    ],
)
def test_direct_spec_construction_raises_spec_errors(build: object, expected: str) -> None:
    import pcgraph as pc
    from pcgraph.errors import SpecError

    with pytest.raises(SpecError) as info:
        build(pc)  # type: ignore[operator]
    assert expected in str(info.value)


def test_initializer_and_trainer_options() -> None:
    import pcgraph as pc
    from pcgraph.data import embedded_dataset
    from pcgraph.errors import ConfigError
    from pcgraph.train import Trainer

    for kwargs in ({"std": -1.0}, {"mean": float("nan")}):
        with pytest.raises(ConfigError, match="random init"):
            pc.make_initializer("random", **kwargs)
    net = pc.compile(pc.mlp([784, 8, 10]), seed=0)
    learner = pc.PCLearner(net, init="forward", T=2)
    data = embedded_dataset("test").subset(20)
    with pytest.raises(ConfigError, match="larger than the 20 training samples"):
        Trainer(learner, data, data, batch_size=64, progress=False)
    with pytest.raises(ConfigError, match="batch_size must be a whole number ≥ 1"):
        Trainer(learner, data, data, batch_size=0, progress=False)
    with pytest.raises(ConfigError, match="task 'regression'"):
        Trainer(learner, data, data, batch_size=4, task="regression", progress=False)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("mse", "gaussian"),
        ("squared_error", "gaussian"),
        ("ce", "cross_entropy"),
        ("xent", "cross_entropy"),
    ],
)
def test_energy_aliases_the_docs_list_are_accepted(alias: str, canonical: str) -> None:
    import pcgraph as pc

    assert pc.NodeSpec(name="a", shape=3, energy=alias).energy == canonical


def test_unknown_energy_lists_the_choices() -> None:
    import pcgraph as pc
    from pcgraph.errors import SpecError

    with pytest.raises(
        SpecError, match=r"unknown energy 'bce'.*Valid choices: cross_entropy, gaussian"
    ):
        pc.NodeSpec(name="a", shape=3, energy="bce")


# --- fuzzing: mutated topologies and argument lists never escape as tracebacks ---------------
_TOPOLOGIES = sorted(p for p in (ROOT / "topologies").glob("*.yaml") if "alexnet" not in p.name)
_VALUES = [None, -1, 0, 1.5, "x", [], {}, [1, -2], "gelu", True, 10**12, "nan", [0], {"a": 1}]


def _mutate(data: dict, kind: int, pick: int, value: object) -> dict:  # type: ignore[type-arg]
    nodes, edges = data.get("nodes") or [], data.get("edges") or []
    if kind == 0 and nodes:
        node = nodes[pick % len(nodes)]
        keys = [*node, "extra"]
        node[keys[pick % len(keys)]] = value
    elif kind == 1 and edges:
        edge = edges[pick % len(edges)]
        keys = [*edge, "params"]
        edge[keys[pick % len(keys)]] = value
    elif kind == 2 and nodes:
        nodes.pop(pick % len(nodes))
    elif kind == 3 and edges:
        edges.append(dict(edges[pick % len(edges)]))  # a duplicate edge
    elif kind == 4:
        keys = [*data, "junk"]
        data[keys[pick % len(keys)]] = value
    elif kind == 5 and edges:
        edge = edges[pick % len(edges)]
        edge["target"] = edge.get("source")  # a self-loop
    return data


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    topology=st.sampled_from(_TOPOLOGIES),
    kind=st.integers(0, 5),
    pick=st.integers(0, 50),
    value=st.sampled_from(_VALUES),
    extra=st.sampled_from(
        [[], ["--json"], ["--clamp", "predict"], ["--init", "forward"], ["--clamp", "nope"]]
    ),
)
def test_fuzzed_topologies_get_a_clean_check(
    topology: Path, kind: int, pick: int, value: object, extra: list[str]
) -> None:
    import contextlib
    import io
    import tempfile

    import yaml

    data = _mutate(yaml.safe_load(topology.read_text()), kind, pick, value)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzzed.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = main(["check", str(path), *extra])
    assert rc in (0, 2), err.getvalue()
    assert "Traceback" not in err.getvalue() and "internal error" not in err.getvalue()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    args=st.lists(
        st.sampled_from(
            [
                "--epochs",
                "--T",
                "--lr",
                "--batch-size",
                "--device",
                "--init",
                "-1",
                "0",
                "nan",
                "abc",
                "2",
                "cuda",
                "hybrid",
                "--embedded",
                "--task",
                "--K",
            ]
        ),
        max_size=6,
    )
)
def test_fuzzed_train_arguments_fail_cleanly_before_training(
    args: list[str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    import contextlib
    import io

    out = tmp_path_factory.mktemp("fuzz") / "run"
    argv = ["train", MLP, "--embedded", "--out", str(out), "--epochs", "0", *args]
    argv += ["--train-size", "200", "--test-size", "50"]  # last wins: a run that starts is short
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse's own usage errors exit 2 with a usage line
            rc = exc.code  # type: ignore[assignment]
    # "--epochs 0" comes first, so only a later valid --epochs could start training; whatever
    # the arguments, the outcome is a clean refusal or a finished run, never a traceback
    assert rc in (0, 2), err.getvalue()
    assert "Traceback" not in err.getvalue()
    assert not list(out.parent.glob("**/*.tmp*"))  # no half-written files
