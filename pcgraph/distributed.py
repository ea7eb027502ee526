"""Data-parallel training on PyTorch's own distributed engine (torch.distributed, torchrun).

Each rank runs inference on its shard of every minibatch; what must agree across ranks is summed
with collectives: the weight gradients (the energy is a sum over samples, so summing the ranks'
gradients gives exactly the gradient of the global batch — the local-gradient path bypasses
autograd, so DDP's hooks cannot do it), the class sums of the average initialization, the
Hopfield memory's fit and gradients, and the metrics.

Launch with ``torchrun --nproc_per_node=N …``; :func:`init_from_env` reads the variables torchrun
sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistContext", "init_from_env"]


@dataclass(frozen=True)
class DistContext:
    """This process's place in a data-parallel job.

    Attributes:
        rank: this process's rank, as torch.distributed sees it.
        world_size: the number of processes, as torch.distributed sees it.
        device: the device this rank computes on.
    """

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that logs and writes files."""
        return self.rank == 0

    def shard(self, indices: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous share of a global batch (the batch size must divide evenly)."""
        n = indices.shape[0]
        if n % self.world_size:
            raise ValueError(
                f"a batch of {n} samples cannot be split evenly over "
                f"{self.world_size} ranks; use a batch size divisible by it"
            )
        per = n // self.world_size
        return indices[self.rank * per : (self.rank + 1) * per]

    def all_reduce_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over ranks, in place."""
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def all_reduce_many_(self, tensors: Iterable[torch.Tensor]) -> None:
        """Sum several tensors over ranks with one collective (flattened into one buffer)."""
        items = list(tensors)
        if not items:
            return
        flat = torch.cat([t.reshape(-1) for t in items])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for t in items:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()

    def all_gather_cat(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenate every rank's ``tensor`` along dim 0, in rank order (equal shapes)."""
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    def barrier(self) -> None:
        """Wait for every rank."""
        dist.barrier()


def init_from_env(*, device: str | None = None, timeout_s: float = 120.0) -> DistContext | None:
    """Join the process group torchrun describes (None when not launched by torchrun).

    Args:
        device: ``cuda`` (nccl, one GPU per rank from LOCAL_RANK) or ``cpu`` (gloo); default:
            cuda when available.
        timeout_s: collectives give up after this long, so a crashed rank ends the job with an
            error instead of a hang.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    use_cuda = (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(
            "nccl" if use_cuda else "gloo", timeout=datetime.timedelta(seconds=timeout_s)
        )
    return DistContext(dist.get_rank(), dist.get_world_size(), dev)
