"""End-to-end learning with ``PCLearner``: SMM accounting, a cyclic graph that learns, a real
FashionMNIST smoke test, and the comparison of initializations at small T (paper §4).

Accuracy margins below were measured on the embedded FashionMNIST subset (deterministic:
``embedded_dataset``, not whatever full copy a machine may have) and are asserted with slack.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import pcgraph as pc
from pcgraph import fast
from pcgraph.compiler import PCNetwork, compile
from pcgraph.data import embedded_dataset, stream_aligned_batches
from pcgraph.engine import PCLearner, solve_inference
from pcgraph.errors import ClampError
from pcgraph.init import ForwardInit, InitContext

TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """These loops run thousands of tiny ops; torch's thread pool only adds overhead there
    (and stalls badly when the CPUs are shared), so run them on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- SMM accounting ------------------------------------------------------------------------
def _one_hot(labels: torch.Tensor, c: int = 10) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels, c).float()


@pytest.mark.parametrize(
    ("init", "options", "T", "extra"),
    [
        ("forward", {}, 3, 4),  # sweep h1..h4: L − 1 = 4 levels
        ("hybrid", {"K": 2}, 3, 2),  # forward up to level 2 only
        ("hybrid", {"K": 7}, 2, 4),  # K beyond the depth costs the full sweep
        ("zero", {}, 4, 0),
        ("random", {}, 1, 0),
        ("null", {}, 2, 0),
        ("average", {}, 2, 0),
        ("auto", {}, 3, 4),  # forward on a DAG with its roots clamped
    ],
)
def test_train_step_smm_mlp5(init: str, options: dict[str, Any], T: int, extra: int) -> None:
    """SMM per update = 2T (predictions, then errors, per step) + the init's sweep; from the
    second batch on for the initializers whose first batch falls back to forward."""
    net = compile(TOPOLOGIES / "mlp5_fashion.yaml", seed=0)
    learner = PCLearner(net, init=init, T=T, init_options=options)
    labels = torch.tensor([0, 1, 2, 3])
    data = {"x": torch.rand(4, 784), "y": _one_hot(labels)}
    m1 = learner.train_step(data, labels=labels)
    m2 = learner.train_step(data, labels=labels)
    m3 = learner.train_step(data, labels=labels)
    assert m2.smm == m3.smm == 2 * T + extra
    assert m3.smm_total == m1.smm + 2 * (2 * T + extra)
    assert m1.T == T
    if init in ("forward", "zero", "random", "auto"):
        assert m1.smm == 2 * T + extra


@pytest.mark.parametrize(("init", "options"), [("null", {}), ("average", {}), ("hybrid", {"K": 2})])
def test_train_step_smm_counts_first_batch_forward_fallback(
    init: str, options: dict[str, Any]
) -> None:
    net = compile(TOPOLOGIES / "mlp5_fashion.yaml", seed=0)
    learner = PCLearner(net, init=init, T=3, init_options=options)
    labels = torch.tensor([0, 1, 2, 3])
    m1 = learner.train_step({"x": torch.rand(4, 784), "y": _one_hot(labels)}, labels=labels)
    assert m1.smm == 2 * 3 + 4


def test_train_step_smm_memory_decoder4_and_loop() -> None:
    # decoder4, generate: one retrieval (oQ, ·Kᵀ, ·V = 3) for z, then h1, h2, h3 forward (3)
    dec = compile(TOPOLOGIES / "decoder4_fashion.yaml", seed=0)
    opts = {"patterns": 8, "heads": 1, "embed_dim": 8}
    learner = PCLearner(dec, init="memory", T=5, clamp="generate", init_options=opts)
    # the first batch has no fitted memory yet: z starts at 0, only the sweep (3) is spent
    m = learner.train_step({"image": torch.rand(4, 784)})
    assert m.smm == 2 * 5 + 3
    m = learner.train_step({"image": torch.rand(4, 784)})
    assert m.smm == 2 * 5 + 3 + 3
    assert learner.initializer.smm(learner.context(learner.clamp, train=True)) == 6
    # auto picks memory there too
    auto = PCLearner(dec, init="auto", T=5, clamp="generate", init_options=opts)
    auto.train_step({"image": torch.rand(4, 784)})
    assert auto.train_step({"image": torch.rand(4, 784)}).smm == 16
    # loop, train clamp: a, b, c retrieved (3); y is clamped, nothing below them to sweep
    loop = compile(TOPOLOGIES / "loop.yaml", seed=0)
    learner = PCLearner(loop, init="memory", T=4, init_options=opts)
    data = {"x": torch.randn(4, 32), "y": torch.randn(4, 10)}
    assert learner.train_step(data).smm == 2 * 4  # nothing fitted yet: a, b, c start at 0
    assert learner.train_step(data).smm == 2 * 4 + 3


def test_train_step_reports_energies_and_trace() -> None:
    net = compile(TOPOLOGIES / "loop.yaml", seed=0)
    learner = PCLearner(net, init="zero", T=6, lr_neurons=0.05)
    m = learner.train_step({"x": torch.randn(8, 32), "y": torch.randn(8, 10)}, trace=True)
    assert m.trace is not None and m.trace.shape == (7, len(net.nodes))
    torch.testing.assert_close(m.energy_before, m.trace[0].sum())
    torch.testing.assert_close(m.energy_after, m.trace[-1].sum())
    assert float(m.energy_after) < float(m.energy_before)
    d = m.to_dict([n.name for n in net.nodes])
    assert d["init"] == "zero" and d["T"] == 6 and set(d["node_energies"]) == set("xabcy")


def test_train_step_clamp_data_errors() -> None:
    net = compile(TOPOLOGIES / "loop.yaml", seed=0)
    learner = PCLearner(net, init="zero", T=2)
    with pytest.raises(ClampError, match="y"):
        learner.train_step({"x": torch.randn(4, 32)})
    with pytest.raises(ClampError, match="a"):
        learner.train_step({"x": torch.randn(4, 32), "y": torch.randn(4, 10), "a": torch.ones(4)})
    with pytest.raises(ClampError, match="batch size"):
        learner.train_step({"x": torch.randn(4, 32), "y": torch.randn(3, 10)})


def test_train_step_learning_direction_matches_energy_gradient() -> None:
    """One step with SGD(η): θ' = θ − η ∂E/∂θ at the inference's final states (autograd)."""
    net = compile(TOPOLOGIES / "skip_mlp.yaml", dtype=torch.float64, seed=0)
    opt = torch.optim.SGD(net.parameters(), lr=1e-2)
    learner = PCLearner(net, init="forward", T=4, lr_neurons=0.1, optimizer=opt)
    labels = torch.tensor([1, 7, 3])
    data = {"x": torch.rand(3, 784, dtype=torch.float64), "y": _one_hot(labels).double()}
    # the states learning sees: same init and inference, done by hand
    x = net.new_states(3)
    net.write(x, data)
    ForwardInit().init(x, InitContext(net, learner.clamp))
    solve_inference(net, x, learner.clamp, 4, lr=0.1, grad_mode="autograd")
    theta = [p.detach().clone() for p in net.parameters()]
    grads = torch.autograd.grad(net.energy(x), list(net.parameters()))
    learner.train_step(data)
    for p, t, g in zip(net.parameters(), theta, grads, strict=True):
        torch.testing.assert_close(p.detach(), t - 1e-2 * g, rtol=1e-8, atol=1e-12)


# --- a cyclic graph learns -----------------------------------------------------------------
@pytest.mark.parametrize("init", ["zero", "memory"])
def test_characterises_cyclic_graph_learning_a_linear_teacher(init: str) -> None:
    """loop.yaml (x → a → b → c → a, c → y) on y = A x: after 60 updates the energy of a fixed
    evaluation batch (same init, same T) drops — measured 3.0-3.4× over seeds 0-2 — and the
    output predicted with x alone gets closer to the teacher (MSE 0.94-1.14 → 0.64-0.83)."""
    torch.manual_seed(0)
    net = compile(TOPOLOGIES / "loop.yaml", seed=0)
    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(10, 32, generator=g) / 32**0.5
    x_eval = torch.randn(64, 32, generator=g)
    y_eval = x_eval @ teacher.T
    opts = {"patterns": 64, "heads": 2, "embed_dim": 16} if init == "memory" else {}
    learner = PCLearner(net, init=init, T=20, lr_neurons=0.1, init_options=opts)

    def eval_energy() -> float:
        res = learner.infer({"x": x_eval, "y": y_eval}, T=20, train=False)
        return float(res.energy_after)

    def predict_mse() -> float:
        res = learner.infer({"x": x_eval}, clamp="predict", T=50, train=False)
        return float(((net.view(res.states, "y") - y_eval) ** 2).mean())

    e0, mse0 = eval_energy(), predict_mse()
    for _ in range(60):
        xb = torch.randn(32, 32, generator=g)
        learner.train_step({"x": xb, "y": xb @ teacher.T})
    e1, mse1 = eval_energy(), predict_mse()
    assert e1 < 0.5 * e0, (e0, e1)
    if init == "zero":
        assert mse1 < 0.85 * mse0, (mse0, mse1)
    # the loop's own weights were trained (c → a closes the cycle)
    assert all(torch.isfinite(p).all() for p in net.parameters())


# --- FashionMNIST: smoke test and the comparison of initializations -----------------------
def _fashion(n_train: int) -> tuple[Any, Any]:
    return embedded_dataset("train").subset(n_train), embedded_dataset("test")


def forward_accuracy(net: PCNetwork, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Classification by a forward sweep from the image (exact fixed point on a DAG)."""
    x = net.new_states(images.shape[0])
    net.write(x, {"x": images})
    ForwardInit().init(x, InitContext(net, frozenset({"x"})))
    return float((net.view(x, "y").argmax(-1) == labels).float().mean())


def train_mlp5(
    init: str,
    seed: int,
    *,
    T: int,
    epochs: int,
    n_train: int = 2000,
    batch_size: int = 50,
    lr_neurons: float = 0.05,
    init_options: dict[str, Any] | None = None,
) -> list[float]:
    """mlp5_fashion, stream-aligned batches (what average/hybrid assume), AdamW(1e-3) on the
    weights (PCLearner's default); returns the test accuracy of a forward sweep after each
    epoch."""
    train, test = _fashion(n_train)
    torch.manual_seed(seed)
    net = compile(TOPOLOGIES / "mlp5_fashion.yaml", seed=seed)
    learner = PCLearner(
        net,
        init=init,
        T=T,
        lr_neurons=lr_neurons,
        init_options=init_options,
        generator=torch.Generator().manual_seed(seed),
    )
    images, targets, labels = train.flat(), train.one_hot(), train.labels
    g = torch.Generator().manual_seed(seed)
    accuracies = []
    for _ in range(epochs):
        for idx in stream_aligned_batches(labels, batch_size, generator=g):
            learner.train_step({"x": images[idx], "y": targets[idx]}, labels=labels[idx])
        accuracies.append(forward_accuracy(net, test.flat(), test.labels))
    return accuracies


def test_characterises_mlp5_fashion_learning_on_the_embedded_subset() -> None:
    """2000 embedded FashionMNIST images, forward init, T=8, γ=0.05, 2 epochs: test accuracy
    of a forward sweep measured 0.706 / 0.742 / 0.725 (seeds 0/1/2); chance is 0.1."""
    (_, acc) = train_mlp5("forward", 0, T=8, epochs=2)
    assert acc > 0.6, acc


def test_characterises_init_comparison_at_small_T() -> None:
    """T=2 (< L=5), 1 epoch of 2000 images (40 updates), seeds 0-2. Measured test accuracy:
    forward 0.436 / 0.465 / 0.466, hybrid(K=2) 0.601 / 0.634 / 0.615, zero 0.136 / 0.077 /
    0.123, random 0.119 / 0.100 / 0.100. Asserted with slack: hybrid beats forward by > 0.08
    on every seed (measured ≥ 0.149), forward beats zero and random by > 0.2 (measured
    ≥ 0.30), and the uninformed inits stay near chance at this T."""
    seeds = (0, 1, 2)
    inits = [("forward", None), ("hybrid", {"K": 2}), ("zero", None), ("random", None)]
    acc = {
        (init, seed): train_mlp5(init, seed, T=2, epochs=1, init_options=opts)[-1]
        for init, opts in inits
        for seed in seeds
    }
    for seed in seeds:
        fwd, hyb = acc["forward", seed], acc["hybrid", seed]
        assert hyb > fwd + 0.08, acc
        assert hyb > 0.5, acc
        for weak in ("zero", "random"):
            assert fwd > acc[weak, seed] + 0.2, acc
            assert acc[weak, seed] < 0.25, acc


@pytest.mark.slow
def test_characterises_init_comparison_at_small_T_two_epochs_all_inits() -> None:
    """T=2, 2 epochs (80 updates), seeds 0-4, six initializations. Measured test accuracy
    after epoch 2: forward 0.586-0.625, hybrid(K=2) 0.744-0.775, average 0.689-0.711,
    null 0.686-0.720, zero 0.095-0.130, random 0.090-0.117. Asserted with slack: hybrid >
    forward + 0.08 per seed (measured ≥ 0.150); average and null > forward + 0.03 per seed
    (measured ≥ 0.069); hybrid above average on average over seeds by > 0.02 (measured
    0.058); zero and random < 0.25."""
    seeds = (0, 1, 2, 3, 4)
    inits = [
        ("forward", None),
        ("hybrid", {"K": 2}),
        ("average", None),
        ("null", None),
        ("zero", None),
        ("random", None),
    ]
    acc = {
        (init, seed): train_mlp5(init, seed, T=2, epochs=2, init_options=opts)[-1]
        for init, opts in inits
        for seed in seeds
    }
    for seed in seeds:
        fwd = acc["forward", seed]
        assert acc["hybrid", seed] > fwd + 0.08, acc
        for name in ("average", "null"):
            assert acc[name, seed] > fwd + 0.03, acc
        for name in ("zero", "random"):
            assert acc[name, seed] < 0.25, acc
    mean = {name: sum(acc[name, s] for s in seeds) / len(seeds) for name, _ in inits}
    assert mean["hybrid"] > mean["average"] + 0.02, mean


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_optimizer_gives_the_default_update(dtype: torch.dtype) -> None:
    # the reference is torch's own default (single-tensor) AdamW on the same gradients
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 20, generator=g, dtype=dtype)
    y = torch.nn.functional.one_hot(torch.randint(0, 5, (16,), generator=g), 5).to(dtype)
    weights = []
    for fuse in (False, True):
        net = pc.compile(pc.mlp([20, 12, 5], activation="tanh"), seed=0, dtype=dtype)
        opt = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=1e-2)
        learner = pc.PCLearner(net, init="forward", T=3, optimizer=opt, fuse_optimizer=fuse)
        # fusing is a fast path: with them off (PCGRAPH_FAST=0) the optimizer stays as given
        # and both runs are torch's default loop (tests/test_fast.py checks the switch)
        fused = fuse and fast.enabled()
        assert learner.optimizer_fused is fused
        assert all(group["fused"] is (True if fused else None) for group in opt.param_groups)
        for _ in range(4):
            learner.train_step({"x": x, "y": y})
        weights.append(torch.cat([p.detach().flatten() for p in net.parameters()]))
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    torch.testing.assert_close(weights[1], weights[0], rtol=0, atol=tol)


@pytest.mark.parametrize("kind", [torch.optim.Adam, torch.optim.AdamW])
def test_fused_optimizer_steps_a_gradient_of_another_layout_by_shape(kind: type) -> None:
    """A gradient whose strides differ from its parameter's (here the transpose of a
    contiguous [2, 3] tensor for a [3, 2] parameter) gets the default loop's update, element by
    element: Adam's first step is −lr · g / (|g| + ε) for each element of g as indexed."""
    g = torch.tensor([[1.0, 2.0, 3.0], [-4.0, 5.0, -6.0]], dtype=torch.float64).T
    assert g.stride() == (1, 3)
    moved = []
    for fuse in (False, True):
        p = torch.nn.Parameter(torch.ones(3, 2, dtype=torch.float64))
        opt = kind([p], lr=1e-2, weight_decay=0.0)
        if fuse:  # a fast path: with them off (PCGRAPH_FAST=0) both runs are the default loop
            assert pc.fuse_optimizer(opt) is fast.enabled()
        p.grad = g
        opt.step()
        moved.append(p.detach() - 1)
    expected = -1e-2 * g / (g.abs() + 1e-8)
    for step in moved:
        torch.testing.assert_close(step, expected, atol=1e-12, rtol=0)


def test_fuse_optimizer_leaves_explicit_choices_alone() -> None:
    net = pc.compile(pc.mlp([4, 3, 2]), seed=0)
    explicit = torch.optim.AdamW(net.parameters(), foreach=False)
    assert not pc.fuse_optimizer(explicit) and explicit.param_groups[0]["foreach"] is False
    sgd = torch.optim.SGD(net.parameters(), lr=0.1)
    assert not pc.fuse_optimizer(sgd) and sgd.param_groups[0]["fused"] is None
    started = torch.optim.Adam(net.parameters())
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    started.step()  # state exists: created by the unfused path
    assert not pc.fuse_optimizer(started)
