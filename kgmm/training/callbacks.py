"""Hook points for techniques that plug into training (adversarial, distillation, DP...)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from kgmm.training.trainer import Trainer


class TrainerCallback:
    """Subclass and override what you need; every hook does nothing by default.

    ``on_backward`` runs after each micro-batch's ``backward()`` (inside DDP's ``no_sync``
    for all but the last micro-batch of a step), so a callback may run extra forward and
    backward passes on ``batch`` (adversarial perturbations) or edit gradients before the
    optimizer step. Set ``trainer.should_stop = True`` to end training after this step.
    """

    def on_step_begin(self, trainer: Trainer, step: int) -> None:
        """Before the first micro-batch of optimizer step ``step`` (1-based)."""

    def on_backward(
        self, trainer: Trainer, task: str, batch: dict[str, Any], loss: torch.Tensor
    ) -> None:
        """After ``loss`` (unweighted, of one micro-batch of ``task``) was back-propagated."""

    def on_step_end(self, trainer: Trainer, step: int, logs: dict[str, Any]) -> None:
        """After the optimizer and scheduler stepped; ``logs`` holds lr and grad_norm."""

    def on_evaluate(self, trainer: Trainer, step: int, metrics: dict[str, float]) -> None:
        """After an evaluation during training."""
