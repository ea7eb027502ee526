"""Memory initialization per clamp set (issue 27): a memory reads only nodes clamped both in
training and at evaluation, is kept per training clamp set, and is never used under a clamp set
it cannot serve without saying so.

Expectations come from the rule itself: a supervised classifier trains with {x, y} and is
evaluated with {x}, so its memory's observations are x alone — the initial state cannot depend on
the label, and training-mode and evaluation-mode initializations of the same images agree. A
retrieval is checked against the Hopfield formula on the nodes the bank reads.
"""

from __future__ import annotations

import io
import math
from typing import Any

import pytest
import torch

from pcgraph.analysis import analyze, check_init
from pcgraph.compiler import PCNetwork, compile
from pcgraph.engine import PCLearner
from pcgraph.errors import InitError
from pcgraph.init import HopfieldMemory, MemoryInit
from pcgraph.schema import GraphSpec, mlp

F64 = torch.float64
SMALL: dict[str, Any] = {"patterns": 16, "heads": 2, "embed_dim": 8}


def spec_of(name: str, nodes: list[dict[str, Any]], edges: list[tuple[str, str]]) -> GraphSpec:
    return GraphSpec.from_dict(
        {
            "name": name,
            "nodes": nodes,
            "edges": [{"source": s, "target": t, "op": "linear"} for s, t in edges],
        }
    )


def cyclic_classifier() -> PCNetwork:
    """The issue's classifier, small: x→h1, h1→a, h1→b, a↔b, a→h3, b→h3, x→h3, h3→y, h1→y."""
    spec = spec_of(
        "cyclic_classifier",
        [
            {"name": "x", "shape": 12, "role": "input"},
            {"name": "h1", "shape": 8, "activation": "tanh"},
            {"name": "a", "shape": 6, "activation": "tanh"},
            {"name": "b", "shape": 6, "activation": "tanh"},
            {"name": "h3", "shape": 8, "activation": "tanh"},
            {"name": "y", "shape": 4, "role": "output", "energy": "cross_entropy"},
        ],
        [
            ("x", "h1"),
            ("h1", "a"),
            ("h1", "b"),
            ("a", "b"),
            ("b", "a"),
            ("a", "h3"),
            ("b", "h3"),
            ("x", "h3"),
            ("h3", "y"),
            ("h1", "y"),
        ],
    )
    return compile(spec, dtype=F64, seed=0)


def two_halves() -> PCNetwork:
    """A latent z → h predicting two observed halves (as topologies/associative_memory.yaml)."""
    spec = spec_of(
        "halves",
        [
            {"name": "z", "shape": 4, "activation": "tanh"},
            {"name": "h", "shape": 6, "activation": "tanh"},
            {"name": "upper", "shape": 5, "role": "output"},
            {"name": "lower", "shape": 5, "role": "output"},
        ],
        [("z", "h"), ("h", "upper"), ("h", "lower")],
    )
    return compile(spec, dtype=F64, seed=0)


def batch(n: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 12, generator=g, dtype=F64)
    y = torch.nn.functional.one_hot(torch.arange(n) % 4, 4).to(F64)
    return {"x": x, "y": y}


def halves(n: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.rand(n, 5, generator=g, dtype=F64) for k in ("upper", "lower")}


def hand_retrieval(mem: HopfieldMemory, o: torch.Tensor) -> torch.Tensor:
    """softmax(β (ô Q + b) Kᵀ) V per head, heads averaged; ô = o standardized per sample."""
    o = (o - o.mean(-1, keepdim=True)) / (o.std(-1, keepdim=True) + 1e-6)
    q = o @ mem.query + mem.bias
    hd = q.shape[1] // mem.heads
    heads = [
        torch.softmax(
            mem.beta * (q[:, h * hd : (h + 1) * hd] @ mem.keys[:, h * hd : (h + 1) * hd].T), -1
        )
        for h in range(mem.heads)
    ]
    return ((torch.stack(heads).sum(0) / mem.heads) @ mem.values).detach()


def trained_classifier(steps: int = 3, **options: Any) -> PCLearner:
    net = cyclic_classifier()
    learner = PCLearner(net, init="memory", T=3, lr_neurons=0.1, init_options={**SMALL, **options})
    for s in range(steps):
        learner.train_step(batch(seed=s))
    return learner


# --- 1. a memory reads only what is observed at evaluation --------------------------------
def test_memory_of_a_supervised_cyclic_graph_never_reads_the_label() -> None:
    """Trained with {x, y}, evaluated with {x}: the initial states of the memory's targets (and
    of every node swept below them but y) are the same whatever label is clamped in training,
    and the same as at evaluation, where y is free."""
    learner = trained_classifier()
    net = learner.net
    data = batch(seed=7)
    other = {"x": data["x"], "y": data["y"].roll(1, dims=1)}  # every label changed

    def start(d: dict[str, torch.Tensor], **kw: Any) -> torch.Tensor:
        return learner.infer(d, T=0, **kw).states.clone()

    x_train, x_other = start(data, train=True), start(other, train=True)
    x_eval = start({"x": data["x"]}, clamp={"x"})
    assert sorted(learner.context(learner.clamp, train=True).plan.memory_targets) == ["a", "b"]
    for name in ("a", "b", "h1", "h3"):
        ref = net.view(x_train, name)
        torch.testing.assert_close(net.view(x_other, name), ref, rtol=0, atol=0)
        torch.testing.assert_close(net.view(x_eval, name), ref, rtol=0, atol=0)
    assert float(net.view(x_train, "a").abs().max()) > 0  # the memory was fitted: it retrieves
    for name in ("a", "b"):  # its query matrix has one row per value of x, none for y
        assert learner.initializer.banks[learner.clamp].memory(net, name).query.shape[0] == 12  # type: ignore[attr-defined]


def test_retrieval_at_evaluation_is_the_formula_on_the_inputs() -> None:
    learner = trained_classifier()
    net = learner.net
    x = batch(seed=3)["x"]
    states = learner.infer({"x": x}, clamp={"x"}, T=0).states
    bank = learner.initializer.banks[learner.clamp]  # type: ignore[attr-defined]
    assert bank.observe == ("x",)
    for name in ("a", "b"):
        torch.testing.assert_close(
            net.view(states, name), hand_retrieval(bank.memory(net, name), x)
        )
    # a training-mode call under {x} builds an empty bank for {x}: the trained one still serves
    learner.infer({"x": x}, clamp={"x"}, T=0, train=True)
    assert frozenset({"x"}) in learner.initializer.banks  # type: ignore[attr-defined]
    states = learner.infer({"x": x}, clamp={"x"}, T=0).states
    for name in ("a", "b"):
        torch.testing.assert_close(
            net.view(states, name), hand_retrieval(bank.memory(net, name), x)
        )


@pytest.mark.parametrize("init", ["memory", "auto"])
@pytest.mark.parametrize(
    ("observe", "message"),
    [
        (["x", "y"], r"'y', which is free at evaluation.*\{x\}.*observe=\['x'\]"),
        (["y"], r"'y', which is free at evaluation"),
        (["h1"], r"'h1', not clamped in training"),
        (["nope"], r"unknown node\(s\) 'nope'"),
        ([], r"observe is empty"),
    ],
)
def test_observations_free_at_evaluation_are_refused_by_the_learner(
    init: str, observe: list[str], message: str
) -> None:
    with pytest.raises(InitError, match=message):
        PCLearner(cyclic_classifier(), init=init, init_options={**SMALL, "observe": observe})


def test_observe_must_be_a_list_of_names() -> None:
    with pytest.raises(InitError, match="observe must be a list of node names"):
        MemoryInit(observe="x")


def test_declared_observations_equal_to_the_default_change_nothing() -> None:
    default, declared = trained_classifier(), trained_classifier(observe=["x"])
    x = batch(seed=5)["x"]
    a = default.infer({"x": x}, clamp={"x"}, T=0).states.clone()
    b = declared.infer({"x": x}, clamp={"x"}, T=0).states.clone()
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_evaluation_that_needs_a_memory_training_never_learns_is_refused() -> None:
    """x → h ⇄ y: with y clamped in training, h is forward-initialized (no memory); at
    evaluation y is free and h, y form a cycle that would need memories nobody trained."""
    spec = spec_of(
        "feedback",
        [
            {"name": "x", "shape": 3, "role": "input"},
            {"name": "h", "shape": 4, "activation": "tanh"},
            {"name": "y", "shape": 2, "role": "output"},
        ],
        [("x", "h"), ("h", "y"), ("y", "h")],
    )
    for init in ("memory", "auto"):
        with pytest.raises(InitError, match=r"\{x\}\) h, y need a memory.*init='zero'"):
            PCLearner(compile(spec, seed=0), init=init, init_options=SMALL)
        with pytest.raises(InitError, match="h, y need a memory"):
            check_init(spec, {"x", "y"}, init)
    PCLearner(compile(spec, seed=0), init="zero")  # an uninformed init is fine


# --- 3. queries on any clamp set ----------------------------------------------------------
def test_query_on_a_clamp_set_no_memory_was_trained_for_raises_naming_it() -> None:
    """A trained chain (forward init in training and prediction) queried with the label alone:
    forward init is impossible there (x is a free root) and no memory was trained for {y}."""
    net = compile(mlp([6, 5, 4, 3]), dtype=F64, seed=0)
    learner = PCLearner(net, init="auto", T=3, init_options=SMALL)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 6, generator=g, dtype=F64)
    y = torch.nn.functional.one_hot(torch.arange(8) % 3, 3).to(F64)
    learner.train_step({"x": x, "y": y})
    with pytest.raises(InitError, match=r"auto.*clamp set \{y\}.*root x.*init='zero'"):
        learner.query({"y": y})
    out = learner.query({"y": y}, init="zero", T=2)  # the fix the message names
    assert out["x"].shape == (8, 6)
    # the cyclic classifier's memory reads x: it cannot serve {y} either
    cyclic = trained_classifier(steps=1)
    with pytest.raises(InitError, match=r"no memory for clamp set \{y\}.*reads \{x\}"):
        cyclic.query({"y": batch()["y"]})


def test_memories_are_kept_per_training_clamp_set() -> None:
    """One initializer, two learners on one network: trained with {upper, lower}, the memory
    reads both halves and cannot serve a query with the upper half alone; once a learner trains
    with {upper}, its own memory (reading upper) serves that query, and training it leaves the
    first memory untouched."""
    net = two_halves()
    init = MemoryInit(**SMALL, lr=1e-2)
    both = PCLearner(net, init=init, T=3, clamp="generate")
    for s in range(2):
        both.train_step(halves(seed=s))
    data = halves(seed=9)
    with pytest.raises(InitError, match=r"clamp set \{upper\}.*reads \{upper, lower\}"):
        both.query({"upper": data["upper"]})
    full = init.banks[frozenset({"upper", "lower"})]
    before = [p.detach().clone() for p in full.memories.parameters()]
    upper = PCLearner(net, init=init, T=3, clamp=["upper"])
    for s in range(2):
        upper.train_step({"upper": halves(seed=s)["upper"]})
    assert set(init.banks) == {frozenset({"upper", "lower"}), frozenset({"upper"})}
    assert all(torch.equal(p, b) for p, b in zip(full.memories.parameters(), before, strict=True))
    mem_upper, mem_full = init.banks[frozenset({"upper"})].memory(net, "z"), full.memory(net, "z")
    assert (mem_upper.query.shape[0], mem_full.query.shape[0]) == (5, 10)
    x = upper.infer({"upper": data["upper"]}, clamp=["upper"], T=0).states
    torch.testing.assert_close(net.view(x, "z"), hand_retrieval(mem_upper, data["upper"]))
    x = both.infer(data, T=0).states
    o = torch.cat([data["upper"], data["lower"]], 1)
    torch.testing.assert_close(net.view(x, "z"), hand_retrieval(mem_full, o))


def test_a_memory_reading_part_of_the_observations_serves_the_smaller_clamp_set() -> None:
    net = two_halves()
    learner = PCLearner(
        net, init="memory", T=3, clamp="generate", init_options={**SMALL, "observe": ["upper"]}
    )
    for s in range(2):
        learner.train_step(halves(seed=s))
    data = halves(seed=4)
    mem = learner.initializer.banks[learner.clamp].memory(net, "z")  # type: ignore[attr-defined]
    x = learner.infer({"upper": data["upper"]}, clamp=["upper"], T=0).states
    torch.testing.assert_close(net.view(x, "z"), hand_retrieval(mem, data["upper"]))
    completed = learner.query({"upper": data["upper"]}, T=2)
    assert completed["lower"].shape == (16, 5)


# --- bad options ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"patterns": 0}, r"patterns must be a whole number ≥ 1, got 0"),
        ({"patterns": -3}, r"patterns must be a whole number ≥ 1, got -3"),
        ({"patterns": 2.5}, r"patterns must be a whole number ≥ 1, got 2.5"),
        ({"heads": 0}, r"heads must be a whole number ≥ 1, got 0"),
        ({"embed_dim": 0}, r"embed_dim must be a whole number ≥ 1, got 0"),
        ({"heads": 3, "embed_dim": 16}, r"heads=3 must divide embed_dim=16"),
        ({"beta": 0.0}, r"beta .* must be a finite number > 0, got 0.0"),
        ({"beta": -1.0}, r"beta .* got -1.0"),
        ({"beta": math.nan}, r"beta .* got nan"),
        ({"lr": 0.0}, r"lr must be a finite number > 0, got 0.0"),
        ({"steps": -1}, r"steps must be a whole number ≥ 0, got -1"),
    ],
)
def test_memory_options_out_of_range_name_the_option_and_value(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InitError, match=message):
        MemoryInit(**options)
    with pytest.raises(InitError, match=message):  # through the learner's options too
        PCLearner(cyclic_classifier(), init="memory", init_options=options)


def test_hopfield_memory_checks_its_sizes() -> None:
    with pytest.raises(InitError, match="heads=4 must divide embed_dim=6"):
        HopfieldMemory(3, 2, patterns=4, heads=4, embed_dim=6, beta=None)
    with pytest.raises(InitError, match="patterns must be a whole number ≥ 1, got 0"):
        HopfieldMemory(3, 2, patterns=0, heads=1, embed_dim=4, beta=None)


# --- checkpoints --------------------------------------------------------------------------
def roundtrip(state: dict[str, object]) -> dict[str, object]:
    """Through torch.save / torch.load(weights_only=True), as pcgraph.train.checkpoint."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    assert isinstance(loaded, dict)
    return loaded


def test_memory_state_round_trips_every_bank() -> None:
    learner = trained_classifier()
    net = learner.net
    state = roundtrip(learner.initializer.state_dict())
    assert state["version"] == 2
    fresh = PCLearner(net, init="memory", T=3, init_options=SMALL)
    fresh.initializer.load_state_dict(state)
    data = batch(seed=11)
    for clamp, d in ((None, data), ({"x"}, {"x": data["x"]})):
        a = learner.infer(d, clamp=clamp, T=0).states.clone()
        b = fresh.infer(d, clamp=clamp, T=0).states.clone()
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # and training goes on from the same memory optimizer state
    bank_a = learner.initializer.banks[learner.clamp]  # type: ignore[attr-defined]
    bank_b = fresh.initializer.banks[fresh.clamp]  # type: ignore[attr-defined]
    assert bank_a.fitted == bank_b.fitted == {"a", "b"}
    assert bank_b.optimizer is not None
    assert (
        bank_b.optimizer.state_dict()["state"].keys()
        == bank_a.optimizer.state_dict()["state"].keys()
    )


def _version1(bank_state: dict[str, Any], obs_nodes: list[str]) -> dict[str, object]:
    """The format before memories were kept per clamp set."""
    return {
        "memories": bank_state["memories"],
        "fitted": bank_state["fitted"],
        "obs_nodes": obs_nodes,
        "optimizer": bank_state["optimizer"],
    }


def test_an_old_generative_checkpoint_still_loads() -> None:
    net = two_halves()
    learner = PCLearner(net, init="memory", T=3, clamp="generate", init_options=SMALL)
    for s in range(2):
        learner.train_step(halves(seed=s))
    bank: dict[str, Any]
    (bank,) = learner.initializer.state_dict()["banks"]  # type: ignore[misc]
    old = roundtrip(_version1(bank, ["upper", "lower"]))
    fresh = PCLearner(net, init="memory", T=3, clamp="generate", init_options=SMALL)
    fresh.initializer.load_state_dict(old)
    data = halves(seed=3)
    a = learner.infer(data, T=0).states.clone()
    torch.testing.assert_close(fresh.infer(data, T=0).states, a, rtol=0, atol=0)


def test_an_old_checkpoint_whose_memory_reads_the_label_fails_clearly() -> None:
    """Before this fix a classifier's memory read the training clamp set, label included."""
    learner = trained_classifier(steps=1)
    bank: dict[str, Any]
    (bank,) = learner.initializer.state_dict()["banks"]  # type: ignore[misc]
    old = _version1(bank, ["x", "y"])
    fresh = PCLearner(learner.net, init="memory", T=3, init_options=SMALL)
    with pytest.raises(InitError, match=r"reads \{x, y\}.*reads \{x\}.*retrain"):
        fresh.initializer.load_state_dict(old)


# --- pcgraph check ------------------------------------------------------------------------
def test_check_explains_auto_per_clamp_set(topology: Any) -> None:
    """Supervised: trained with the inputs and outputs, evaluated with the inputs, the memory
    reads the inputs only; generative: one clamp set for both, the memory reads it."""
    cyclic = analyze(GraphSpec.from_yaml(topology("fully_connected_groups")), "train")
    assert cyclic.evaluation_clamp == ["x"]
    rows = [(r.role, r.clamp, r.init, r.observe, r.unread) for r in cyclic.init_per_clamp]
    assert rows == [
        ("training", ["x", "y"], "memory", ["x"], ["y"]),
        ("evaluation", ["x"], "memory", ["x"], ["y"]),
    ]
    assert "reading x (not y: free at evaluation)" in cyclic.summary()
    gen = analyze(GraphSpec.from_yaml(topology("decoder4_fashion")), "generate")
    assert [(r.role, r.observe, r.targets) for r in gen.init_per_clamp] == [
        ("training and evaluation", ["image"], ["z"])
    ]
    dag = analyze(GraphSpec.from_yaml(topology("mlp5_fashion")), "train")
    assert [(r.clamp, r.init) for r in dag.init_per_clamp] == [
        (["x", "y"], "forward"),
        (["x"], "forward"),
    ]
    assert "InitError" in dag.summary()  # what a query elsewhere does
