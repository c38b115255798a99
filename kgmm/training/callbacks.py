"""Hook points for techniques that plug into training (adversarial, distillation, DP...)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from kgmm.model import ModelOutput
    from kgmm.training.trainer import Trainer

Collate = Callable[[list[dict]], dict[str, Any]]


class TrainerCallback:
    """Subclass and override what you need; every hook does nothing by default.

    Hooks in the order they run:

    * ``wrap_collator`` once per task while the data streams are built: return a collator
      that changes the samples before the model's collator sees them (augmentation).
    * ``on_train_begin`` after the optimizer and scheduler exist and a checkpoint (if any)
      was loaded: a callback may replace ``trainer.optimizer``, attach hooks to
      ``trainer.model``, or set ``trainer.max_grad_norm = None`` when it clips gradients
      itself (differential privacy).
    * ``extra_loss`` inside every forward pass of the training loss (also under DDP and
      inside :meth:`Trainer.compute_loss`): a tensor added to the head's loss (distillation,
      a penalty towards deployed weights), or None.
    * ``on_backward`` after each micro-batch's ``backward()`` (inside DDP's ``no_sync`` for
      all but the last micro-batch of a step): a callback may run extra forward and backward
      passes through ``trainer.compute_loss`` (adversarial perturbations) or edit gradients.
    * ``on_log`` with each training record before it is written: add fields to it.

    Set ``trainer.should_stop = True`` in any hook to end training after this step.
    """

    def wrap_collator(self, trainer: Trainer, task: str, collator: Collate) -> Collate:
        """The collator the data loader of ``task`` uses; by default ``collator`` itself."""
        return collator

    def on_train_begin(self, trainer: Trainer) -> None:
        """Before the first optimizer step of :meth:`Trainer.train`."""

    def on_step_begin(self, trainer: Trainer, step: int) -> None:
        """Before the first micro-batch of optimizer step ``step`` (1-based)."""

    def extra_loss(
        self, trainer: Trainer, task: str, batch: dict[str, Any], output: ModelOutput
    ) -> torch.Tensor | None:
        """A term added to the loss of ``output`` (one micro-batch of ``task``)."""
        return None

    def on_backward(
        self, trainer: Trainer, task: str, batch: dict[str, Any], loss: torch.Tensor
    ) -> None:
        """After ``loss`` (unweighted, of one micro-batch of ``task``) was back-propagated."""

    def on_step_end(self, trainer: Trainer, step: int, logs: dict[str, Any]) -> None:
        """After the optimizer and scheduler stepped; ``logs`` holds lr and grad_norm."""

    def on_log(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """Before a ``split: train`` record is written to metrics.jsonl; may add fields."""

    def on_evaluate(self, trainer: Trainer, step: int, metrics: dict[str, float]) -> None:
        """After an evaluation during training."""
