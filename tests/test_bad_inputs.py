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
        SpecError, match=r"unknown energy 'l3'.*Valid choices: bernoulli, cross_entropy, gaussian"
    ):
        pc.NodeSpec(name="a", shape=3, energy="l3")


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


# --- the bad-topology corpus: each through `pcgraph check`, exit 2, the fragment and the line ---
_HEAD = "name: t\nnodes:\n- {name: x, shape: 4, role: input}\n- {name: y, shape: 2, role: output}\n"
_EDGE = "edges:\n- {source: x, target: y}\n"


def _with_node(node: str) -> str:
    """A valid x → y graph with one more node (line 5) and an edge into it from x (line 8)."""
    return _HEAD + node + "\n" + _EDGE + "- {source: x, target: h}\n"


def _with_edge(edge: str) -> str:
    """A valid x → h → y graph whose edge on line 8 is replaced by ``edge``."""
    return _HEAD + "- {name: h, shape: 3}\n" + "edges:\n- {source: x, target: h}\n" + edge + "\n"


TOPOLOGY_CASES = [
    # (id, text, fragment of the message, line it must name or None)
    ("empty", "", "the file is empty", None),
    ("top-list", "- a\n- b\n", "top level must be a mapping", None),
    ("top-scalar", "42\n", "top level must be a mapping", None),
    ("no-nodes", "name: t\nedges: []\n", "nodes", None),
    ("nodes-not-list", "name: t\nnodes: {x: 1}\nedges: []\n", "nodes", 2),
    ("edges-not-list", _HEAD + "edges: 3\n", "edges", 5),
    ("unknown-top-key", _HEAD + _EDGE + "colour: red\n", "unknown field", 7),
    ("dup-key-edges", _HEAD + _EDGE + "edges: []\n", "duplicate key 'edges'", 7),
    ("dup-key-node", "name: t\nnodes:\n- {name: x, name: z, shape: 4}\n", "duplicate key", 3),
    ("tab-indent", "name: t\nnodes:\n\t- {name: x}\n", "YAML syntax error", 3),
    (
        "unclosed-flow",
        "name: t\nnodes: [{name: x, shape: 4\nedges: []\n",
        "YAML syntax error",
        None,
    ),
    ("bad-indent", "name: t\nnodes:\n  - name: x\n shape: 4\n", "YAML syntax error", None),
    ("python-tag", "name: !!python/object:os.system x\n", "no !tags", 1),
    ("custom-tag", _HEAD + "edges: !mine []\n", "no !tags", 5),
    ("node-no-name", _with_node("- {shape: 3}"), "name: required field is missing", 5),
    ("node-name-int", _with_node("- {name: 7, shape: 3}"), "name", 5),
    ("node-name-empty", _with_node("- {name: '', shape: 3}"), "name", 5),
    ("node-name-bool-off", _with_node("- {name: off, shape: 3}"), "quote it", 5),
    ("node-name-bool-yes", _with_node("- {name: yes, shape: 3}"), "quote it", 5),
    ("node-name-space", _with_node("- {name: 'a b', shape: 3}"), "name", 5),
    ("node-no-shape", _with_node("- {name: h}"), "shape: required field is missing", 5),
    ("shape-zero", _with_node("- {name: h, shape: 0}"), "non-positive", 5),
    ("shape-negative", _with_node("- {name: h, shape: -3}"), "non-positive", 5),
    ("shape-float", _with_node("- {name: h, shape: 2.5}"), "shape", 5),
    ("shape-string", _with_node("- {name: h, shape: big}"), "shape", 5),
    ("shape-empty-list", _with_node("- {name: h, shape: []}"), "shape", 5),
    ("shape-nested", _with_node("- {name: h, shape: [[3]]}"), "shape", 5),
    ("shape-list-neg", _with_node("- {name: h, shape: [3, -1]}"), "non-positive", 5),
    ("role-unknown", _with_node("- {name: h, shape: 3, role: hidden}"), "role", 5),
    ("role-int", _with_node("- {name: h, shape: 3, role: 1}"), "role", 5),
    ("act-unknown", _with_node("- {name: h, shape: 3, activation: relux}"), "relu", 5),
    ("act-int", _with_node("- {name: h, shape: 3, activation: 3}"), "activation", 5),
    ("act-bool", _with_node("- {name: h, shape: 3, activation: no}"), "activation", 5),
    ("energy-unknown", _with_node("- {name: h, shape: 3, energy: l3}"), "unknown energy", 5),
    ("energy-int", _with_node("- {name: h, shape: 3, energy: 2}"), "energy", 5),
    ("precision-zero", _with_node("- {name: h, shape: 3, precision: 0}"), "precision", 5),
    ("precision-neg", _with_node("- {name: h, shape: 3, precision: -1}"), "precision", 5),
    ("precision-nan", _with_node("- {name: h, shape: 3, precision: .nan}"), "precision", 5),
    ("precision-inf", _with_node("- {name: h, shape: 3, precision: .inf}"), "precision", 5),
    ("precision-str", _with_node("- {name: h, shape: 3, precision: high}"), "precision", 5),
    ("node-extra", _with_node("- {name: h, shape: 3, size: 3}"), "unknown field", 5),
    ("node-not-map", _with_node("- h"), "nodes[2]", 5),
    ("dup-node", _with_node("- {name: x, shape: 3}"), "declared twice", 5),
    (
        "ce-image",
        _HEAD + "- {name: h, shape: [1, 2, 2], energy: cross_entropy}\n" + _EDGE,
        "cross_entropy",
        5,
    ),
    ("edge-no-source", _with_edge("- {target: y}"), "source: required field is missing", 8),
    ("edge-no-target", _with_edge("- {source: h}"), "target: required field is missing", 8),
    ("edge-unknown-src", _with_edge("- {source: q, target: y}"), "'q' is not a node", 8),
    ("edge-unknown-tgt", _with_edge("- {source: h, target: q}"), "'q' is not a node", 8),
    ("edge-self-loop", _with_edge("- {source: h, target: h}"), "self-loop", 8),
    ("edge-twice", _with_edge("- {source: x, target: h}"), "declared twice", 8),
    ("edge-op-unknown", _with_edge("- {source: h, target: y, op: matmul}"), "edge op", 8),
    ("edge-op-int", _with_edge("- {source: h, target: y, op: 5}"), "op", 8),
    ("edge-extra", _with_edge("- {source: h, target: y, weight: 2}"), "unknown field", 8),
    ("edge-bias-str", _with_edge("- {source: h, target: y, bias: maybe}"), "bias", 8),
    (
        "edge-params-unknown",
        _with_edge("- {source: h, target: y, op: linear, params: {k: 3}}"),
        "invalid linear parameters: k: unknown field",
        8,
    ),
    ("edge-params-list", _with_edge("- {source: h, target: y, params: [1]}"), "params", 8),
    ("edge-not-map", _with_edge("- h→y"), "edges[1]", 8),
    (
        "linear-image-src",
        "name: t\nnodes:\n- {name: x, shape: [1, 4, 4], role: input}\n- {name: y, shape: 2, "
        "role: output}\nedges:\n- {source: x, target: y, op: linear}\n",
        "use op: dense",
        6,
    ),
    (
        "conv-vector",
        "name: t\nnodes:\n- {name: x, shape: 16, role: input}\n- {name: y, shape: [2, 2, 2], "
        "role: output}\nedges:\n- {source: x, target: y, op: conv2d}\n",
        "[C, H, W]",
        6,
    ),
    (
        "conv-kernel-too-big",
        "name: t\nnodes:\n- {name: x, shape: [1, 2, 2], role: input}\n- {name: y, shape: [2, 1, "
        "1], role: output}\nedges:\n- {source: x, target: y, op: conv2d, params: "
        "{kernel_size: 5}}\n",
        "larger",
        6,
    ),
    (
        "conv-neg-stride",
        "name: t\nnodes:\n- {name: x, shape: [1, 4, 4], role: input}\n- {name: y, shape: [2, 2, "
        "2], role: output}\nedges:\n- {source: x, target: y, op: conv2d, params: {stride: -1}}\n",
        "stride",
        6,
    ),
    (
        "conv-shape-mismatch",
        "name: t\nnodes:\n- {name: x, shape: [1, 4, 4], role: input}\n- {name: y, shape: [2, 3, "
        "3], role: output}\nedges:\n- {source: x, target: y, op: conv2d, params: "
        "{kernel_size: 3}}\n",
        "produces",
        6,
    ),
    (
        "reshape-count",
        "name: t\nnodes:\n- {name: x, shape: 4, role: input}\n- {name: y, shape: 3, role: "
        "output}\nedges:\n- {source: x, target: y, op: reshape}\n",
        "reshape cannot",
        6,
    ),
    (
        "identity-shape",
        "name: t\nnodes:\n- {name: x, shape: 4, role: input}\n- {name: y, shape: 3, role: "
        "output}\nedges:\n- {source: x, target: y, op: identity}\n",
        "produces",
        6,
    ),
    (
        "output-unpredicted",
        "name: t\nnodes:\n- {name: x, shape: 4, role: input}\n- {name: y, shape: 3, role: "
        "output}\nedges: []\n",
        "nothing predicts it",
        4,
    ),
    ("nodes-null", "name: t\nnodes: null\nedges: []\n", "nodes: must be a list, got null", 2),
    ("name-list", "name: [a]\nnodes: []\n", "name: must be a string, got a list", 1),
    ("edge-source-list", _with_edge("- {source: [h], target: y}"), "must be a string", 8),
    ("edges-mapping", _HEAD + "edges: {a: 1}\n", "edges: must be a list, got a dict", 5),
    ("node-string", _with_node("- h"), "must be a mapping like {name: h, shape: 3}", 5),
    ("precision-bool", _with_node("- {name: h, shape: 3, precision: true}"), "precision", 5),
    ("shape-bool", _with_node("- {name: h, shape: true}"), "shape must be a positive int", 5),
    (
        "alias-bomb",
        "a: &a [1,1,1,1,1,1,1,1,1,1]\n"
        + "".join(
            f"a{i}: &a{i} [{', '.join(['*a' if i == 1 else f'*a{i - 1}'] * 10)}]\n"
            for i in range(1, 8)
        ),
        "expands to more than",
        None,
    ),
    ("deep-brackets", "name: t\nnodes: " + "[" * 5000 + "]" * 5000 + "\n", "nested", None),
    ("not-utf8-bytes", "name: t\xff\nnodes: []\n", None, None),
]


@pytest.mark.parametrize(
    ("text", "fragment", "line"),
    [pytest.param(t, f, n, id=i) for i, t, f, n in TOPOLOGY_CASES],
)
def test_bad_topology_corpus(
    text: str,
    fragment: str | None,
    line: int | None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "bad.yaml"
    if fragment is None:  # bytes that are not UTF-8
        path.write_bytes(text.encode("latin-1"))
        fragment = "UTF-8"
    else:
        path.write_text(text, encoding="utf-8")
    rc, err = run(["check", str(path)], capsys)
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith("pcgraph check: error: "), err
    assert str(path) in err  # the file is named
    assert fragment in err, err
    if line is not None:
        assert f"line {line}" in err, err


# --- the Python API: each bad argument raises one error of the family, naming what is wrong ---
def _api_cases() -> list[object]:
    import torch

    import pcgraph as pc
    from pcgraph import errors as E

    def net() -> object:
        return pc.compile(pc.mlp([6, 5, 3]), seed=0)

    def learner(**kw: object) -> object:
        return pc.PCLearner(net(), **kw)  # type: ignore[arg-type]

    def states_call(states: object, T: object = 2, **kw: object) -> object:
        n = net()
        return pc.solve_inference(n, states, "train", T, **kw)  # type: ignore[arg-type]

    good = lambda: net().new_states(2)  # noqa: E731
    cases = [
        # (id, call, error class, fragment)
        ("mlp-one-size", lambda: pc.mlp([784]), E.SpecError, "at least"),
        ("mlp-zero-size", lambda: pc.mlp([4, 0, 2]), E.SpecError, "non-positive"),
        ("mlp-neg-size", lambda: pc.mlp([4, -1, 2]), E.SpecError, "non-positive"),
        ("mlp-bad-act", lambda: pc.mlp([4, 3, 2], activation="relux"), E.SpecError, "relu"),
        ("mlp-bad-energy", lambda: pc.mlp([4, 2], output_energy="l2"), E.SpecError, "energy"),
        ("decoder-one-size", lambda: pc.decoder([8]), E.SpecError, "at least"),
        ("node-direct", lambda: pc.NodeSpec(name="h", shape=-1), E.SpecError, "NodeSpec('h')"),
        ("edge-direct", lambda: pc.EdgeSpec(source="a"), E.SpecError, "target"),
        ("graph-direct", lambda: pc.GraphSpec(name="g", nodes=[]), E.SpecError, "no nodes"),
        ("from-dict-list", lambda: pc.GraphSpec.from_dict([1]), E.SpecError, "mapping"),  # type: ignore[arg-type]
        (
            "from-yaml-missing",
            lambda: pc.GraphSpec.from_yaml(Path("/nonexistent.yaml")),
            E.SpecError,
            "no such file",
        ),
        (
            "from-yaml-folder",
            lambda: pc.GraphSpec.from_yaml(ROOT / "topologies"),
            E.SpecError,
            "is a folder",
        ),
        (
            "compile-int-dtype",
            lambda: pc.compile(pc.mlp([4, 2]), dtype=torch.int64),
            E.ConfigError,
            "dtype",
        ),
        (
            "compile-bad-device",
            lambda: pc.compile(pc.mlp([4, 2]), device="gpu"),
            E.ConfigError,
            "device",
        ),
        ("compile-not-spec", lambda: pc.compile(42), E.SpecError, "got int"),  # type: ignore[arg-type]
        ("learner-T-float", lambda: learner(T=2.5), E.ConfigError, "T"),
        ("learner-T-neg", lambda: learner(T=-1), E.ConfigError, "T"),
        ("learner-T-str", lambda: learner(T="8"), E.ConfigError, "T"),
        ("learner-lr-zero", lambda: learner(lr_neurons=0.0), E.ConfigError, "lr"),
        ("learner-lr-nan", lambda: learner(lr_neurons=float("nan")), E.ConfigError, "lr"),
        ("learner-init-unknown", lambda: learner(init="fwd"), E.SpecError, "forward"),
        ("learner-grad-mode", lambda: learner(grad_mode="numeric"), E.ConfigError, "grad_mode"),
        (
            "learner-neuron-opt",
            lambda: learner(neuron_optimizer="rmsprop"),
            E.ConfigError,
            "rmsprop",
        ),
        ("learner-step-rule", lambda: learner(step_rule="armijo"), E.ConfigError, "step_rule"),
        ("learner-optimizer-type", lambda: learner(optimizer="adam"), E.ConfigError, "optimizer"),
        ("learner-clamp-unknown", lambda: learner(clamp={"q"}), E.ClampError, "'q'"),
        (
            "states-list",
            lambda: states_call([[0.0] * 14]),
            E.ConfigError,
            "states must be a tensor",
        ),
        ("states-shape", lambda: states_call(torch.zeros(2, 3)), E.ConfigError, "flat buffer"),
        ("states-empty", lambda: states_call(torch.zeros(0, 14)), E.ConfigError, "B ≥ 1"),
        (
            "states-dtype",
            lambda: states_call(torch.zeros(2, 14, dtype=torch.float64)),
            E.ConfigError,
            "float64",
        ),
        ("T-float", lambda: states_call(good(), T=2.5), E.ConfigError, "T"),
        ("T-neg", lambda: states_call(good(), T=-3), E.ConfigError, "T"),
        ("lr-neg", lambda: states_call(good(), lr=-0.1), E.ConfigError, "lr"),
        ("opt-unknown", lambda: states_call(good(), optimizer="lbfgs"), E.ConfigError, "lbfgs"),
        (
            "grad-unknown",
            lambda: states_call(good(), grad_mode="exact"),
            E.ConfigError,
            "grad_mode",
        ),
        (
            "divergence-neg",
            lambda: states_call(good(), divergence=-1.0),
            E.ConfigError,
            "divergence",
        ),
        (
            "backtrack-adam",
            lambda: states_call(good(), optimizer="adam", step_rule="backtrack"),
            E.ConfigError,
            "backtrack",
        ),
        (
            "clamp-unknown-name",
            lambda: pc.solve_inference(net(), good(), {"zz"}, 2),
            E.ClampError,
            "'zz'",
        ),  # type: ignore[arg-type]
        (
            "clamp-unknown-task",
            lambda: pc.solve_inference(net(), good(), "pretrain", 2),
            E.ClampError,
            "pretrain",
        ),  # type: ignore[arg-type]
        (
            "data-missing",
            lambda: learner().train_step({"x": torch.zeros(2, 6)}),
            E.ClampError,
            "no data for clamped node",
        ),  # type: ignore[attr-defined]
        (
            "data-extra",
            lambda: learner().train_step(
                {"x": torch.zeros(2, 6), "y": torch.zeros(2, 3), "h1": torch.zeros(2, 5)}
            ),
            E.ClampError,
            "not clamped",
        ),  # type: ignore[attr-defined]
        (
            "data-shape",
            lambda: learner().train_step({"x": torch.zeros(2, 7), "y": torch.zeros(2, 3)}),
            E.ClampError,
            "'x'",
        ),  # type: ignore[attr-defined]
        (
            "data-batch-mismatch",
            lambda: learner().train_step({"x": torch.zeros(2, 6), "y": torch.zeros(3, 3)}),
            E.ClampError,
            "batch size",
        ),  # type: ignore[attr-defined]
        (
            "data-complex",
            lambda: learner().train_step(
                {"x": torch.zeros(2, 6, dtype=torch.complex64), "y": torch.zeros(2, 3)}
            ),
            E.ClampError,
            "complex",
        ),  # type: ignore[attr-defined]
        (
            "data-inf-target",
            lambda: learner().train_step(
                {"x": torch.zeros(2, 6), "y": torch.full((2, 3), float("inf"))}
            ),
            E.ClampError,
            "'y'",
        ),  # type: ignore[attr-defined]
        ("view-unknown-node", lambda: net().view(good(), "zz"), E.SpecError, "'zz'"),  # type: ignore[attr-defined]
    ]
    return [pytest.param(call, cls, frag, id=i) for i, call, cls, frag in cases]


@pytest.mark.parametrize(("call", "cls", "fragment"), _api_cases())
def test_bad_api_arguments_raise_one_family_error(call, cls, fragment: str) -> None:  # type: ignore[no-untyped-def]
    from pcgraph.errors import PCGraphError

    with pytest.raises(PCGraphError) as info:
        call()
    assert isinstance(info.value, cls), f"{type(info.value).__name__}: {info.value}"
    assert fragment in str(info.value), str(info.value)
    assert "\n" not in str(info.value).strip()  # one line


@pytest.mark.parametrize("data", ["mnist", "kmnist", "cifar10"])
def test_embedded_with_another_dataset_is_refused(
    data: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--embedded is FashionMNIST: with --data mnist it trained on FashionMNIST silently."""
    topology = str(Path(__file__).resolve().parent.parent / "topologies" / "mlp5_fashion.yaml")
    assert main(["train", topology, "--data", data, "--embedded", "--data-root", "."]) == 2
    assert f"--embedded is the FashionMNIST subset; drop it to train on --data {data}" in (
        capsys.readouterr().err
    )


def test_a_query_or_prediction_with_nothing_observed_says_so() -> None:
    """query({}) and predict({}) said "the clamped tensors disagree on the batch size: {}"."""
    import pcgraph as pc
    from pcgraph.errors import ClampError

    learner = pc.PCLearner(pc.compile(pc.mlp([4, 3, 2])), init="zero", T=2)
    for call in (learner.query, learner.predict):
        with pytest.raises(ClampError, match="no data given: clamp at least one node"):
            call({})


def test_predict_without_the_inputs_names_them_and_points_to_query() -> None:
    """predict({"y": ...}) on a classifier raised a memory error about clamp set {y}."""
    import torch

    import pcgraph as pc
    from pcgraph.errors import ClampError

    learner = pc.PCLearner(pc.compile(pc.mlp([4, 3, 2])), init="auto", T=2)
    with pytest.raises(ClampError, match=r"predict clamps the graph's inputs, but x is not given"):
        learner.predict({"y": torch.zeros(3, 2)})
    assert learner.query({"y": torch.zeros(3, 2)}, init="zero")["x"].shape == (3, 4)


def test_evaluate_on_a_topology_or_a_garbage_file_is_one_short_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A YAML topology given to evaluate, or a file torch refuses: one line, no torch advice to
    load with weights_only=False (which would run the file's code)."""
    topology = Path(__file__).resolve().parent.parent / "topologies" / "mlp5_fashion.yaml"
    assert main(["evaluate", str(topology)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a topology, not a checkpoint; train it first" in err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    assert main(["evaluate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot be read as a pcgraph checkpoint" in err
    assert "weights_only" not in err
