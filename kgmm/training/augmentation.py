"""``Augmentation``: augment training texts each time a batch is built.

Randomness. Each batch draws from a generator seeded by ``(seed, the batch's texts in
order)``. The trainer fixes batches in the main process from ``(seed, epoch, position)``
and reshuffles them every epoch, so a sample gets a fresh augmentation each epoch (its
batch changed), the same one on every rerun, with any ``num_workers`` (workers only see the
samples), and after a resume (the resumed run rebuilds the same batches). A batch that
repeats exactly (a dataset smaller than one batch) repeats its augmentation. A per-epoch
counter in the collator would need the epoch, which the data-loader workers never see.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from kgmm.data.augment import TextAugmenter
from kgmm.errors import ConfigError
from kgmm.training.callbacks import Collate, TrainerCallback

if TYPE_CHECKING:
    from kgmm.training.trainer import Trainer


class AugmentingCollator:
    """Replaces a share ``probability`` of the batch's texts by an augmented copy, then
    calls ``collator``. Picklable (runs in data-loader workers); never mutates samples."""

    def __init__(
        self, augmenter: TextAugmenter, collator: Collate, probability: float, seed: int
    ) -> None:
        self.augmenter = augmenter
        self.collator = collator
        self.probability = probability
        self.seed = seed

    def __call__(self, samples: Sequence[dict]) -> dict[str, Any]:
        return self.collator(self.augment(samples))

    def augment(self, samples: Sequence[dict]) -> list[dict]:
        """The batch with some texts augmented (copies of the changed samples)."""
        rng = np.random.default_rng([self.seed, _fingerprint(samples)])
        augmented = []
        for sample in samples:
            text = sample.get("text")
            if text is not None and rng.random() < self.probability:
                sample = {**sample, "text": self._augment_text(text, rng)}
            augmented.append(sample)
        return augmented

    def _augment_text(self, text: Any, rng: np.random.Generator) -> Any:
        if isinstance(text, str):
            return self.augmenter.augment(text, rng)
        return tuple(self.augmenter.augment(part, rng) for part in text)  # (question, context)


class Augmentation(TrainerCallback):
    """Augment the texts of ``tasks`` (default: every training task) with ``augmenter``;
    each text is augmented with ``probability`` each time its batch is built, otherwise it
    is kept as written. ``seed`` defaults to the run's ``TrainingArguments.seed``."""

    def __init__(
        self,
        augmenter: TextAugmenter,
        probability: float = 0.5,
        tasks: Sequence[str] | None = None,
        seed: int | None = None,
    ) -> None:
        if not 0.0 <= probability <= 1.0:
            raise ConfigError(f"Augmentation probability must be in [0, 1], got {probability}")
        self.augmenter = augmenter
        self.probability = probability
        self.tasks = None if tasks is None else set(tasks)
        self.seed = seed

    def wrap_collator(self, trainer: Trainer, task: str, collator: Collate) -> Collate:
        unknown = sorted((self.tasks or set()) - set(trainer.train_data))
        if unknown:
            raise ConfigError(f"Augmentation tasks {unknown} have no training data")
        if self.tasks is not None and task not in self.tasks:
            return collator
        seed = trainer.args.seed if self.seed is None else self.seed
        return AugmentingCollator(self.augmenter, collator, self.probability, seed)


def _fingerprint(samples: Sequence[dict]) -> int:
    """A stable 64-bit hash of the batch's texts in order (Python's ``hash`` is salted)."""
    digest = hashlib.blake2b(digest_size=8)
    for sample in samples:
        digest.update(repr(sample.get("text")).encode("utf-8"))
        digest.update(b"\x00")
    return int.from_bytes(digest.digest(), "little")
