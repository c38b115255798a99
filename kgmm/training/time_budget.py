"""Stop training when a budget of training time is spent (evaluation time not counted)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kgmm.errors import ConfigError
from kgmm.training.callbacks import TrainerCallback

if TYPE_CHECKING:
    from kgmm.training.trainer import Trainer


class TimeBudget(TrainerCallback):
    """End :meth:`Trainer.train` after the first optimizer step at which
    ``trainer.training_seconds`` reaches ``seconds``; the trainer then evaluates and saves as
    at any other end. ``curve`` collects ``(training_seconds, step, metrics)`` of each
    evaluation, e.g. to plot a metric against training time."""

    def __init__(self, seconds: float) -> None:
        if seconds <= 0:
            raise ConfigError(f"TimeBudget needs a positive number of seconds, got {seconds}")
        self.seconds = seconds
        self.curve: list[tuple[float, int, dict[str, float]]] = []
        self.exhausted = False

    def on_step_end(self, trainer: Trainer, step: int, logs: dict[str, Any]) -> None:
        if trainer.training_seconds >= self.seconds:
            self.exhausted = True
            trainer.should_stop = True

    def on_evaluate(self, trainer: Trainer, step: int, metrics: dict[str, float]) -> None:
        self.curve.append((trainer.training_seconds, step, dict(metrics)))
