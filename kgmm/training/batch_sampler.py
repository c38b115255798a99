"""``EpochBatchSampler``: one task's index batches for one process, resumable mid-epoch."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

MEGA_BATCH_FACTOR = 50


class EpochBatchSampler:
    """Index batches of a dataset of ``size`` samples, for ``rank`` of ``world_size``.

    Each epoch is a fresh permutation drawn from ``(seed, epoch)`` alone, so the batches of
    any epoch can be rebuilt at any time: resuming is :meth:`set_position` with the epoch and
    the number of batches already consumed. Permutations are cut into *global* batches of
    ``batch_size * world_size`` samples; each rank takes its ``batch_size`` slice, so a run on
    N processes sees the same global batches as one process with N times the batch size.

    ``lengths`` (one per sample) turn on length grouping: inside shuffled mega-batches of
    ``MEGA_BATCH_FACTOR`` global batches, samples are sorted longest first, then the order of
    the batches is shuffled. An incomplete last global batch is dropped when ``drop_last``
    or ``world_size > 1`` (every rank needs a full, equal share).
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        lengths: Sequence[int] | None = None,
    ) -> None:
        self.size = size
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last or world_size > 1
        self.lengths = None if lengths is None else np.asarray(lengths)
        self.epoch = 0
        self.start = 0

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    def __len__(self) -> int:
        """Batches per epoch."""
        full, rest = divmod(self.size, self.global_batch_size)
        return full + int(rest > 0 and not self.drop_last)

    def set_position(self, epoch: int, start: int = 0) -> None:
        """Make the next iteration yield ``epoch``'s batches from batch ``start`` on."""
        self.epoch = epoch
        self.start = start

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.epoch_batches(self.epoch)[self.start :]:
            yield batch[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """The global batches of ``epoch``, in order."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(self.size)
        width = self.global_batch_size
        if self.lengths is None:
            batches = [order[i : i + width] for i in range(0, self.size, width)]
        else:
            batches = []
            mega = width * MEGA_BATCH_FACTOR
            for i in range(0, self.size, mega):
                chunk = order[i : i + mega]
                chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
                batches.extend(chunk[j : j + width] for j in range(0, len(chunk), width))
            batches = [batches[i] for i in rng.permutation(len(batches))]
        if self.drop_last:
            batches = [b for b in batches if len(b) == width]
        return [b.tolist() for b in batches]
