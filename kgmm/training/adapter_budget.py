"""AdaLoRA's rank budget, run by the Trainer for a model with an AdaLoRA adapter."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from kgmm.training.callbacks import TrainerCallback

if TYPE_CHECKING:
    from kgmm.model import FusedModel, ModelOutput
    from kgmm.training.trainer import Trainer


class AdaLoraBudget(TrainerCallback):
    """Adds AdaLoRA's orthogonality penalty to the loss and calls peft's
    ``update_and_allocate`` after every optimizer step (before the next ``zero_grad``, while
    the gradients that score importance are still there).

    The :class:`Trainer` adds it by itself when the model has an AdaLoRA adapter.
    """

    def on_train_begin(self, trainer: Trainer) -> None:
        args = trainer.args
        self.total_steps = (
            args.max_steps
            if args.max_steps > 0
            else max(1, math.ceil(args.num_epochs * trainer.steps_per_epoch))
        )

    def extra_loss(
        self, trainer: Trainer, task: str, batch: dict[str, Any], output: ModelOutput
    ) -> torch.Tensor | None:
        return trainer.model.adapter.orthogonal_loss()

    def on_step_end(self, trainer: Trainer, step: int, logs: dict[str, Any]) -> None:
        trainer.model.adapter.allocate(step, self.total_steps)


def adapter_callbacks(model: FusedModel, callbacks: list[TrainerCallback]) -> list[TrainerCallback]:
    """The callbacks ``model``'s adapter needs that ``callbacks`` lacks."""
    adapter = model.adapter
    needed = adapter is not None and adapter.is_adalora
    if needed and not any(isinstance(c, AdaLoraBudget) for c in callbacks):
        return [AdaLoraBudget()]
    return []
