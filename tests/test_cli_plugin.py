"""``pcgraph --plugin MODULE``: a user's module registers parts before the topology is read.

The plugin here is written into ``tmp_path`` by each test: it registers an activation (softsign)
and a neuron solver (sign descent), each counting its calls, so that a test can tell that
``check`` read a topology that uses them and that ``train`` ran through them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pcgraph.cli import main
from pcgraph.cli.plugins import _registries

PLUGIN = '''
"""A plugin: softsign as an activation, sign descent as a neuron solver."""
import torch

import pcgraph as pc
from pcgraph.activations import ACTIVATIONS, Activation
from pcgraph.names import ACTIVATION_NAMES

CALLS = {"activation": 0, "solver": 0}


def softsign(x):
    CALLS["activation"] += 1
    return x / (1 + x.abs())


def softsign_derivative(x):
    return 1 / (1 + x.abs()) ** 2


ACTIVATION_NAMES.register("softsign", "softsign")
ACTIVATIONS.register("softsign", Activation("softsign", softsign, softsign_derivative))


class SignDescent(pc.Solver):
    def step(self, x, grad, state, *, lr, stage):
        CALLS["solver"] += 1
        x.sub_(torch.sign(grad), alpha=lr)


pc.register_solver("sign_descent", SignDescent())
'''

TOPOLOGY = """
name: softsign_mlp
nodes:
- {name: x, shape: 784, role: input}
- {name: h, shape: 16, activation: softsign}
- {name: y, shape: 10, role: output, energy: cross_entropy}
edges:
- {source: x, target: h}
- {source: h, target: y}
"""


@pytest.fixture
def plugin(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A plugin module in ``tmp_path`` (on sys.path) under a name of its own, and a topology
    beside it that uses its activation; the registries and sys.modules are restored after."""
    name = "plugin_" + "".join(c if c.isalnum() else "_" for c in request.node.name)
    (tmp_path / f"{name}.py").write_text(PLUGIN)
    (tmp_path / "net.yaml").write_text(TOPOLOGY)
    before = [set(registry.names()) for registry in _registries()]
    sys.path.insert(0, str(tmp_path))
    yield name
    sys.path.remove(str(tmp_path))
    for module in [m for m in sys.modules if m.startswith(name) or m.startswith("_pcgraph_p")]:
        del sys.modules[module]
    for registry, names in zip(_registries(), before, strict=True):
        for added in set(registry.names()) - names:
            registry.unregister(added)


def calls(module: str) -> dict[str, int]:
    found: dict[str, int] = sys.modules[module].CALLS
    return found


def test_check_reads_a_topology_with_a_plugins_activation(
    plugin: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    topology = str(tmp_path / "net.yaml")
    assert main(["check", topology]) == 2  # the YAML alone imports nothing
    assert "unknown activation 'softsign'" in capsys.readouterr().err
    assert main(["--plugin", plugin, "check", topology]) == 0
    assert "forward initialization is possible" in capsys.readouterr().out


def test_plugin_as_a_file_after_the_command(
    plugin: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = str(tmp_path / f"{plugin}.py")
    assert main(["check", str(tmp_path / "net.yaml"), f"--plugin={file}", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["init"] == "forward"


def test_train_runs_through_a_plugins_activation_and_solver(
    plugin: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["train", str(tmp_path / "net.yaml"), "--plugin", plugin, "--embedded"]
    argv += ["--train-size", "40", "--test-size", "20", "--batch-size", "20", "--T", "2"]
    argv += ["--neuron-optimizer", "sign_descent", "--lr-neurons", "0.01"]
    argv += ["--out", str(out), "--no-progress"]
    assert main(argv) == 0, capsys.readouterr().err
    assert (out / "history.json").is_file()
    assert json.loads((out / "options.json").read_text())["neuron_optimizer"] == "sign_descent"
    # 2 minibatches × T = 2 steps of the solver at least (evaluation infers too)
    assert calls(plugin)["solver"] >= 4
    assert calls(plugin)["activation"] > 0


def test_a_plugin_that_cannot_be_imported_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["--plugin", "no_such_plugin_mod", "check", "x.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--plugin no_such_plugin_mod: no module named 'no_such_plugin_mod'" in err

    broken = tmp_path / "broken_plugin.py"
    broken.write_text("import pcgraph\nraise RuntimeError('the lab server is down')\n")
    assert main(["check", "x.yaml", "--plugin", str(broken)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"--plugin {broken}: cannot be imported: RuntimeError: the lab server is down" in err
    assert "broken_plugin" not in sys.modules

    assert main(["check", "x.yaml", "--plugin", str(tmp_path / "missing.py")]) == 2
    assert "missing.py: no such file" in capsys.readouterr().err
    assert main(["check", "x.yaml", "--plugin"]) == 2
    assert "--plugin needs a module" in capsys.readouterr().err


def test_a_plugin_that_registers_nothing_is_an_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    idle = tmp_path / "idle_plugin.py"
    idle.write_text("import pcgraph as pc\n\nif __name__ == '__main__':\n    pass\n")
    assert main(["--plugin", str(idle), "check", "x.yaml"]) == 2
    err = capsys.readouterr().err
    assert "idle_plugin.py: the module registers nothing" in err
    assert main(["--plugin", "json", "check", "x.yaml"]) == 2  # a module, but no plugin
    assert "--plugin json: the module registers nothing" in capsys.readouterr().err
    sys.modules.pop("idle_plugin", None)


def test_the_shell_command_with_pythonpath(plugin: str, tmp_path: Path) -> None:
    """``python -m pcgraph check FILE --plugin MODULE`` in a fresh process, the plugin found
    through PYTHONPATH."""
    env = dict(os.environ, PYTHONPATH=str(tmp_path), PYTHONWARNINGS="default")
    argv = [sys.executable, "-m", "pcgraph", "check", str(tmp_path / "net.yaml")]
    done = subprocess.run(
        [*argv, "--plugin", plugin], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2
    assert "unknown activation 'softsign'" in done.stderr


EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "plugin"


def test_the_example_plugin_trains_a_user_module_energy_and_solver_from_yaml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """examples/plugin: a user's nn.Module on an edge (op: two_layer), a user's energy on the
    hidden node and a user's solver, all from my_parts.py, trained from my_net.yaml by the CLI;
    the module's parameters are the network's and they moved."""
    import torch

    before = [set(registry.names()) for registry in _registries()]
    out = tmp_path / "run"
    plugin = str(EXAMPLE / "my_parts.py")
    try:
        argv = ["train", str(EXAMPLE / "my_net.yaml"), "--plugin", plugin, "--embedded"]
        argv += ["--train-size", "60", "--test-size", "20", "--batch-size", "20", "--T", "2"]
        argv += ["--neuron-optimizer", "sign_descent", "--lr-neurons", "0.01", "--epochs", "1"]
        argv += ["--out", str(out), "--no-progress"]
        assert main(argv) == 0, capsys.readouterr().err
        state = torch.load(out / "checkpoint.pt", weights_only=False)
        assert main(["check", str(EXAMPLE / "my_net.yaml"), "--plugin", plugin]) == 0
        assert "backprop: 5" in capsys.readouterr().out  # two_layer declares smm=2
    finally:
        for module in [m for m in sys.modules if "my_parts" in m or m.startswith("_pcgraph_p")]:
            del sys.modules[module]
        for registry, names in zip(_registries(), before, strict=True):
            for added in set(registry.names()) - names:
                registry.unregister(added)
    weights = state["network"] if "network" in state else state["model"]
    module_params = [k for k in weights if ".module." in k]
    assert len(module_params) == 4, list(weights)  # the two nn.Linear of TwoLayer
    assert json.loads((out / "options.json").read_text())["neuron_optimizer"] == "sign_descent"


def test_check_runs_a_plugins_module_once_and_names_a_wrong_shape(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A factory module that returns the wrong shape is found by ``check`` (as by ``compile``),
    not first by ``train``: one line naming the edge and both shapes, exit 2."""
    (tmp_path / "wrong_shape_plugin.py").write_text(
        "import torch.nn as nn\nimport pcgraph as pc\n"
        "pc.register_op('too_wide', lambda i, o: nn.Linear(i[0], o[0] + 1))\n"
    )
    (tmp_path / "wide.yaml").write_text(
        "name: wide\nnodes:\n- {name: x, shape: 8, role: input}\n"
        "- {name: y, shape: 3, role: output}\nedges:\n- {source: x, target: y, op: too_wide}\n"
    )
    before = [set(registry.names()) for registry in _registries()]
    try:
        argv = ["check", str(tmp_path / "wide.yaml"), "--plugin"]
        assert main([*argv, str(tmp_path / "wrong_shape_plugin.py")]) == 2
    finally:
        sys.modules.pop("wrong_shape_plugin", None)
        for registry, names in zip(_registries(), before, strict=True):
            for added in set(registry.names()) - names:
                registry.unregister(added)
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "edge x→y: its module maps [B, 8] to [2, 4] for B = 2; the target needs [B, 3]" in err
