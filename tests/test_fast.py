"""pcgraph.fast: one switch for every fast path.

With the fast paths off only the plain torch reference runs (no C compiler, no private torch
op, the general step of the program); with them on, the same training computes the same
numbers to float32 rounding. References: the same training with the switch the other way, and
in float64 a hand-written loop on ``torch.autograd`` of ``net.energy``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import pcgraph as pc
from pcgraph import fast
from pcgraph.compiler import program_for
from pcgraph.compiler.program import InferenceProgram
from pcgraph.errors import ConfigError
from pcgraph.ops import matmul, native, native_build

SIZES = [20, 16, 16, 5]


@pytest.fixture(autouse=True)
def _restore_switch() -> Iterator[None]:
    """Each test leaves the switch as it found it (the suite also runs with PCGRAPH_FAST=0)."""
    before = fast.enabled()
    yield
    pc.fast_paths(before)


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("PCGRAPH_FAST", *env)}
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**environ, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def _data(dtype: torch.dtype, batch: int = 32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {
        "x": torch.randn(batch, SIZES[0], generator=g, dtype=dtype),
        "y": torch.randn(batch, SIZES[-1], generator=g, dtype=dtype),
    }


def _flat(net: pc.PCNetwork) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in net.parameters()])


def _program(learner: pc.PCLearner) -> InferenceProgram:
    prog = program_for(learner.net, learner.clamp)
    assert isinstance(prog, InferenceProgram)
    return prog


def _rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).norm() / want.norm())


# --- the switch ----------------------------------------------------------------------------
def test_a_context_sets_the_switch_and_restores_it() -> None:
    start, gen = fast.enabled(), fast.generation()
    with pc.fast_paths(not start) as switch:
        assert fast.enabled() is (not start)
        assert fast.generation() == gen + 1  # caches keyed on it see the change
        with pc.fast_paths(start):
            assert fast.enabled() is start
        assert fast.enabled() is (not start)
    assert fast.enabled() is start and switch.previous is start
    pc.fast_paths(not start)  # a plain call sets it for good
    assert fast.enabled() is (not start)
    pc.fast_paths(not start)  # no change: the generation stays
    assert fast.generation() == gen + 5


def test_the_switch_takes_only_a_bool() -> None:
    with pytest.raises(ConfigError, match="True or False"):
        pc.fast_paths("off")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "on"), [("0", False), ("false", False), (" OFF ", False), ("no", False), ("1", True)]
)
def test_the_environment_sets_the_switch_at_import(value: str, on: bool) -> None:
    proc = _python("import pcgraph.fast as f; print(f.enabled())", PCGRAPH_FAST=value)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(on)


def test_an_unknown_environment_value_is_one_clear_error() -> None:
    proc = _python("import pcgraph; pcgraph.compile(pcgraph.mlp([2, 2]))", PCGRAPH_FAST="fastest")
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert "ConfigError" in last and "PCGRAPH_FAST='fastest'" in last
    assert "0, false, off, no" in last
    # the command line: one line, exit 2, no traceback
    proc = _python(
        "import sys; from pcgraph.cli import main; sys.exit(main(['check', 'x.yaml']))",
        PCGRAPH_FAST="fastest",
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "PCGRAPH_FAST='fastest'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_switch_imports_no_torch() -> None:
    proc = _python("import sys, pcgraph; pcgraph.fast_paths(False); print('torch' in sys.modules)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


# --- nothing fast runs while it is off -------------------------------------------------------
def test_off_in_the_environment_compiles_nothing_and_calls_no_private_op(tmp_path: Path) -> None:
    # a fresh process trains float32 products large enough for oneDNN and the native kernels:
    # no compiler is looked for, the library cache stays empty, the oneDNN op is never probed
    code = """
import torch, pcgraph as pc
from pcgraph.ops import matmul, native, native_build
net = pc.compile(pc.mlp([96, 128, 128, 10], activation="gelu"), seed=0)
learner = pc.PCLearner(net, init="forward", T=3)
g = torch.Generator().manual_seed(0)
data = {"x": torch.randn(256, 96, generator=g), "y": torch.randn(256, 10, generator=g)}
for _ in range(2):
    learner.train_step(data)
print(native_build._tried, native.available(), matmul._PROBED, learner.optimizer_fused)
"""
    proc = _python(code, PCGRAPH_FAST="0", PCGRAPH_CACHE_DIR=str(tmp_path), CC="/bin/false")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False", "False", "False"]
    assert not list(tmp_path.iterdir())


def test_off_binds_no_closure_and_calls_neither_compiler_nor_onednn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def forbidden(*args: object, **kwargs: object) -> object:
        raise AssertionError("a fast path ran with the fast paths off")

    # whatever was loaded or probed before in this process: reaching either raises
    monkeypatch.setattr(native_build, "_load", forbidden)
    monkeypatch.setattr(native_build, "_build", forbidden)
    monkeypatch.setattr(subprocess, "run", forbidden)
    monkeypatch.setattr(matmul, "_LINEAR", forbidden)
    monkeypatch.setattr(matmul, "_PROBED", True)
    monkeypatch.setattr(matmul, "_onednn_op", forbidden)
    monkeypatch.setattr(matmul, "_MODE", "onednn")  # every float32 product would go to oneDNN
    pc.fast_paths(False)
    assert not native.available() and native.library_path() is None
    assert matmul.onednn_linear_op() is None
    net = pc.compile(pc.mlp([96, 128, 128, 10], activation="tanh"), seed=0)
    learner = pc.PCLearner(net, init="forward", T=3)
    assert not learner.optimizer_fused
    g = torch.Generator().manual_seed(0)
    data = {"x": torch.randn(64, 96, generator=g), "y": torch.randn(64, 10, generator=g)}
    for _ in range(2):
        learner.train_step(data)
    bound = _program(learner).bound
    assert all(fn is None for _, fn in bound.error_steps)  # ε: the general path
    assert all(fn is None for fn, _ in bound.gradient_steps.steps)  # ∂E/∂x: the general path
    assert not bound.derived.grad_steps  # ∂E/∂θ: never bound
    assert not any(fused for _, fused in bound.gradient_steps._sgd.values())  # no fused SGD


# --- the same numbers either way -------------------------------------------------------------
def _train(
    activation: str, dtype: torch.dtype, switches: list[bool], *, adam: bool = False
) -> tuple[torch.Tensor, list[torch.Tensor], pc.PCLearner, list[bool]]:
    """One learner, one training step per entry of ``switches`` (the switch set for that step).

    Returns:
        the states of the last inference, the weights before and after each step, the learner
        and, per step, whether its program had the specialised closures bound.
    """
    with pc.fast_paths(switches[0]):
        net = pc.compile(pc.mlp(SIZES, activation=activation), seed=0, dtype=dtype)
        opt = (
            torch.optim.AdamW(net.parameters(), lr=1e-2)
            if adam
            else torch.optim.SGD(net.parameters(), lr=0.05)
        )
        learner = pc.PCLearner(net, init="forward", T=4, lr_neurons=0.1, optimizer=opt)
    data = _data(dtype)
    weights, states, bound = [_flat(net)], torch.empty(0), []
    for on in switches:
        with pc.fast_paths(on):
            states = learner.infer(data, train=True).states.clone()
            learner.train_step(data)
        prog = _program(learner).bound
        bound.append(any(fn is not None for _, fn in prog.error_steps))
        assert prog.gradient_steps.specialised is bound[-1]
        weights.append(_flat(net))
    return states, weights, learner, bound


@pytest.mark.parametrize("activation", ["tanh", "gelu"])
def test_float32_training_is_the_same_with_fast_paths_on_and_off(activation: str) -> None:
    on_states, on_w, _, on_bound = _train(activation, torch.float32, [True] * 3)
    off_states, off_w, _, off_bound = _train(activation, torch.float32, [False] * 3)
    # not a vacuous comparison: the fast run took the specialised closures, the other did not
    assert all(on_bound) and not any(off_bound)
    assert _rel(on_states, off_states) < 1e-5
    for k in range(1, len(on_w)):  # each weight update, θ_k − θ_{k−1}
        assert _rel(on_w[k] - on_w[k - 1], off_w[k] - off_w[k - 1]) < 1e-5


def test_float64_training_with_fast_paths_off_is_the_autograd_reference() -> None:
    """A hand-written step: forward init x_i = μ_i, T steps x ← x − γ ∂E/∂x on the free nodes,
    then θ ← θ − η ∂E/∂θ at the final states, every gradient by autograd of net.energy."""
    T, gamma, eta = 4, 0.1, 0.05
    states, weights, _, _ = _train("tanh", torch.float64, [False])
    net = pc.compile(pc.mlp(SIZES, activation="tanh"), seed=0, dtype=torch.float64)
    data = _data(torch.float64)
    x = net.new_states(data["x"].shape[0])
    net.write(x, data)
    with torch.no_grad():
        for node in net.nodes[1:-1]:  # forward init of the hidden nodes, in order
            x[:, node.cols] = net.prediction(x, node.index)
    free = torch.zeros(net.state_size, dtype=torch.float64)
    for node in net.nodes[1:-1]:
        free[node.cols] = 1.0
    for _ in range(T):
        x_ = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(net.energy(x_), x_)
        x = x - gamma * g * free
    torch.testing.assert_close(states, x, rtol=1e-10, atol=1e-12)
    params = list(net.parameters())
    grads = torch.autograd.grad(net.energy(x), params)
    want = torch.cat([(p - eta * g).flatten() for p, g in zip(params, grads, strict=True)])
    torch.testing.assert_close(weights[-1], want, rtol=1e-10, atol=1e-12)


def test_toggling_on_one_learner_gives_the_result_of_either_mode() -> None:
    # AdamW: the learner fused it (switch on at build), and runs it unfused while off
    pattern = [True, False, False, True, False]
    _, mixed, learner, bound = _train("gelu", torch.float32, pattern, adam=True)
    _, on, _, _ = _train("gelu", torch.float32, [True] * 5, adam=True)
    _, off, _, _ = _train("gelu", torch.float32, [False] * 5, adam=True)
    assert bound == pattern  # each toggle bound the program's steps again
    assert learner.optimizer_fused
    assert all(group["fused"] is True for group in learner.optimizer.param_groups)
    for k in range(1, len(mixed)):
        step = mixed[k] - mixed[k - 1]
        assert _rel(step, on[k] - on[k - 1]) < 1e-5
        assert _rel(step, off[k] - off[k - 1]) < 1e-5


def test_a_fused_optimizer_steps_unfused_while_the_switch_is_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[object] = []
    _, _, learner, _ = _train("tanh", torch.float32, [True], adam=True)
    step = learner.optimizer.step

    def spy() -> None:
        seen.append(learner.optimizer.param_groups[0]["fused"])
        step()

    monkeypatch.setattr(learner.optimizer, "step", spy)
    for on in (True, False, True):
        with pc.fast_paths(on):
            learner.train_step(_data(torch.float32))
    assert seen == [True, None, True]


def test_two_fresh_processes_train_bit_identical_weights() -> None:
    # products from 64·96·128 to 256·128·128 multiply-adds: both sides of the size rule
    code = """
import hashlib, torch, pcgraph as pc
torch.set_num_threads(1)
net = pc.compile(pc.mlp([96, 128, 128, 10], activation="tanh"), seed=0)
learner = pc.PCLearner(net, init="forward", T=4)
g = torch.Generator().manual_seed(0)
for batch in (256, 64, 256):
    learner.train_step({"x": torch.randn(batch, 96, generator=g),
                        "y": torch.randn(batch, 10, generator=g)})
w = torch.cat([p.detach().flatten() for p in net.parameters()])
print(hashlib.sha256(w.numpy().tobytes()).hexdigest())
"""
    env = {"PCGRAPH_FAST": os.environ["PCGRAPH_FAST"]} if "PCGRAPH_FAST" in os.environ else {}
    runs = [_python(code, **env) for _ in range(2)]
    for proc in runs:
        assert proc.returncode == 0, proc.stderr
    assert runs[0].stdout == runs[1].stdout


# --- the registry of specialisations ----------------------------------------------------------
def _resolve(path: str) -> object:
    import importlib

    module, _, qualname = path.partition(":")
    found: object = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


@pytest.mark.parametrize("spec", fast.SPECIALISATIONS, ids=lambda s: s.name)
def test_every_specialisation_names_its_code_its_reference_and_a_test_that_exist(
    spec: fast.Specialisation,
) -> None:
    assert callable(_resolve(spec.code)), spec.code
    assert callable(_resolve(spec.reference)), spec.reference
    file, _, name = spec.test.partition("::")
    source = (Path(__file__).resolve().parent.parent / file).read_text()
    assert f"def {name}(" in source, spec.test
