"""Data-parallel training (torch.distributed, gloo on CPU) equals one process on the same global
batches; a failing rank ends the job instead of hanging."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as tdist
import torch.multiprocessing as mp

import pcgraph as pc
from pcgraph.data import embedded_dataset
from pcgraph.distributed import DistContext
from pcgraph.train import Trainer

TOPO = Path(__file__).resolve().parent.parent / "topologies"
WORLD = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build(topology: str, init: str, dist: DistContext | None) -> Trainer:
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    train = embedded_dataset("train").subset(300, generator=gen)
    test = embedded_dataset("test").subset(60, generator=gen)
    net = pc.compile(TOPO / f"{topology}.yaml", seed=0, dtype=torch.float64)
    clamp = "train" if net.spec.names_with_role("input") else "generate"
    options = {"patterns": 64, "embed_dim": 16, "heads": 2} if init == "memory" else {}
    learner = pc.PCLearner(
        net,
        init=init,
        T=3,
        lr_neurons=0.05,
        clamp=clamp,
        init_options=options,
        dist=dist,
        optimizer=torch.optim.AdamW(net.parameters(), lr=1e-3),
    )
    return Trainer(learner, train, test, batch_size=60, epochs=2, progress=False)


def worker(rank: int, port: int, topology: str, init: str, out: str, fail: bool) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    import datetime

    tdist.init_process_group(
        "gloo", rank=rank, world_size=WORLD, timeout=datetime.timedelta(seconds=20)
    )
    try:
        trainer = build(topology, init, DistContext(rank, WORLD, torch.device("cpu")))
        if fail and rank == 1:
            raise RuntimeError("rank 1 failed on purpose")
        if fail:  # let rank 1's failure be the first one mp.spawn sees: rank 0's own error
            time.sleep(2.0)  # ("connection closed by peer") follows it by milliseconds
        trainer.fit()
        if rank == 0:
            torch.save(
                {
                    "params": [p.detach() for p in trainer.net.parameters()],
                    "history": trainer.history.to_dict(),
                },
                out,
            )
        # both ranks get here before tearing down: gloo can abort a process whose peer
        # disconnects while it still uses the connection
        tdist.barrier()
    finally:
        tdist.destroy_process_group()


@pytest.mark.parametrize(
    ("topology", "init"),
    [("mlp5_fashion", "forward"), ("mlp5_fashion", "average"), ("decoder4_fashion", "memory")],
)
def test_two_ranks_equal_one_process(tmp_path: Path, topology: str, init: str) -> None:
    out = tmp_path / "rank0.pt"
    mp.spawn(worker, args=(free_port(), topology, init, str(out), False), nprocs=WORLD)
    single = build(topology, init, None)
    single.fit()
    result = torch.load(out, weights_only=True)
    for a, b in zip(single.net.parameters(), result["params"], strict=True):
        torch.testing.assert_close(b, a.detach(), rtol=1e-5, atol=1e-8)
    for key, values in single.history.to_dict().items():
        if key == "wall_s":  # a measurement, not a result: never equal across runs
            continue
        assert result["history"][key] == pytest.approx(values, rel=1e-6), key


def test_a_failing_rank_ends_the_job_with_its_error(tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(Exception, match="rank 1 failed on purpose"):
        mp.spawn(
            worker,
            args=(free_port(), "mlp5_fashion", "forward", str(tmp_path / "x.pt"), True),
            nprocs=WORLD,
        )
    assert time.monotonic() - start < 60  # no hang


def test_shard_splits_evenly_or_says_why() -> None:
    ctx = DistContext(1, 2, torch.device("cpu"))
    assert ctx.shard(torch.arange(6)).tolist() == [3, 4, 5]
    with pytest.raises(ValueError, match="divisible"):
        ctx.shard(torch.arange(5))
