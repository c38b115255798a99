"""Multi-process data parallelism under ``torchrun`` (torch.distributed + DDP)."""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the run; ``world_size == 1`` is a plain single process."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @classmethod
    def from_environment(cls, use_cuda: bool) -> DistributedContext:
        """Read ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` (set by ``torchrun``) and join the
        process group (NCCL on CUDA, gloo on CPU) unless the caller already did."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        context = cls(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), world_size)
        if not dist.is_initialized():
            if use_cuda:
                torch.cuda.set_device(context.local_rank)
            dist.init_process_group("nccl" if use_cuda else "gloo")
            atexit.register(_leave)
        return context

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise mean of ``values`` over all processes."""
        if self.enabled:
            values = values.clone()
            dist.all_reduce(values)
            values /= self.world_size
        return values

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every process (a picklable object)."""
        if not self.enabled:
            return value
        holder = [value]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def wrap(self, module: nn.Module, device: torch.device) -> nn.Module:
        """``module`` in ``DistributedDataParallel``; ``find_unused_parameters`` because the
        heads of the tasks not drawn in a step (and absent modalities) get no gradient."""
        if not self.enabled:
            return module
        device_ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=True)


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
