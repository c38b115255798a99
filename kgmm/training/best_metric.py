"""``BestMetricTracker``: the best value of the selection metric and the patience count."""

from __future__ import annotations

from typing import Any


class BestMetricTracker:
    """Remembers the best value of one metric; counts evaluations since it last improved."""

    def __init__(self, greater_is_better: bool, patience: int | None = None) -> None:
        self.greater_is_better = greater_is_better
        self.patience = patience
        self.best: float | None = None
        self.best_step: int | None = None
        self.evaluations_without_improvement = 0

    def update(self, value: float, step: int) -> bool:
        """Record an evaluation; True when ``value`` is a new best."""
        better = self.best is None or (
            value > self.best if self.greater_is_better else value < self.best
        )
        if better:
            self.best, self.best_step = value, step
            self.evaluations_without_improvement = 0
        else:
            self.evaluations_without_improvement += 1
        return better

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.evaluations_without_improvement >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_step": self.best_step,
            "evaluations_without_improvement": self.evaluations_without_improvement,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state["best"]
        self.best_step = state["best_step"]
        self.evaluations_without_improvement = int(state["evaluations_without_improvement"])
