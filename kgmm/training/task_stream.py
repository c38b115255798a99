"""``TaskStream``: an endless, resumable stream of one task's collated batches."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader

from kgmm.data import text_lengths
from kgmm.errors import DataError
from kgmm.training.batch_sampler import EpochBatchSampler


class TaskStream:
    """Batches of one task, epoch after epoch, through a ``DataLoader`` whose workers run
    the model's collator.

    The position (epoch, batches consumed) is counted where batches are *consumed*, not
    where workers prefetch them, so :meth:`state_dict` is exact with any ``num_workers``.
    """

    def __init__(
        self,
        task: str,
        dataset: Sequence[dict],
        collator: Callable[[list[dict]], dict[str, Any]],
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        group_by_length: bool = False,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        self.task = task
        task_seed = zlib.crc32(f"{seed}:{task}".encode())
        self.sampler = EpochBatchSampler(
            len(dataset),
            batch_size,
            seed=task_seed,
            rank=rank,
            world_size=world_size,
            drop_last=drop_last,
            lengths=text_lengths(dataset) if group_by_length else None,
        )
        if len(self.sampler) == 0:
            raise DataError(
                f"task {task!r} has {len(dataset)} training samples, fewer than one global "
                f"batch of {self.sampler.global_batch_size}; lower batch_size"
            )
        self.loader = DataLoader(
            dataset,
            batch_sampler=self.sampler,
            collate_fn=collator,
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
            pin_memory=pin_memory,
            generator=torch.Generator().manual_seed(task_seed),  # keeps the global RNG intact
        )
        self.epoch = 0
        self.consumed = 0
        self._iterator: Iterator | None = None

    @property
    def batches_per_epoch(self) -> int:
        return len(self.sampler)

    def next_batch(self) -> dict[str, Any]:
        if self._iterator is None:
            self._restart()
        try:
            batch = next(self._iterator)
        except StopIteration:
            self.epoch, self.consumed = self.epoch + 1, 0
            self._restart()
            batch = next(self._iterator)
        self.consumed += 1
        return batch

    def _restart(self) -> None:
        self.sampler.set_position(self.epoch, self.consumed)
        self._iterator = iter(self.loader)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "consumed": self.consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.consumed = int(state["epoch"]), int(state["consumed"])
        self._iterator = None
