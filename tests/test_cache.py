"""pcgraph.cache and the caches built on it stay bounded, whatever the batch sizes."""

from __future__ import annotations

import pytest
import torch

import pcgraph as pc
from pcgraph.cache import BoundedCache
from pcgraph.compiler import program_for


def test_bounded_cache_evicts_the_least_recently_used() -> None:
    cache: BoundedCache[int, str] = BoundedCache(2)
    cache.put(1, "a")
    cache.put(2, "b")
    assert cache.get(1) == "a"  # 1 is now the most recent
    cache.put(3, "c")  # evicts 2, not 1
    assert 2 not in cache and list(cache) == [1, 3]
    assert cache.get_or_create(4, lambda: "d") == "d" and len(cache) == 2
    built = []
    assert cache.get_or_create(4, lambda: built.append(1) or "x") == "d" and not built
    with pytest.raises(ValueError, match="≥ 1"):
        BoundedCache(0)


def test_learner_and_program_caches_stay_bounded_under_many_batch_sizes() -> None:
    net = pc.compile(pc.mlp([6, 5, 3], activation="tanh"), seed=0)
    learner = pc.PCLearner(net, init="forward", T=2)
    g = torch.Generator().manual_seed(0)
    for b in range(1, 40):
        x = torch.randn(b, 6, generator=g)
        y = torch.nn.functional.one_hot(torch.randint(0, 3, (b,), generator=g), 3).float()
        learner.train_step({"x": x, "y": y})
        learner.predict({"x": x})
    assert len(learner._states) <= 4
    for clamp in (net.resolve_clamp("train"), net.resolve_clamp("predict")):
        assert len(program_for(net, clamp)._buffers) <= 4  # type: ignore[attr-defined]
