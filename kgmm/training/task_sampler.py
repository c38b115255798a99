"""``TaskSampler``: which task the next micro-batch comes from (seeded, resumable)."""

from __future__ import annotations

from typing import Any

import torch

from kgmm.errors import ConfigError


class TaskSampler:
    """Draws task names from ``sizes`` (task -> batches per epoch).

    * ``proportional``: probability proportional to the size;
    * ``temperature``: proportional to ``size ** (1 / temperature)`` (1 = proportional,
      larger = closer to uniform; Arivazhagan et al., 2019);
    * ``round_robin``: the tasks in turn, in the order of ``sizes``.

    Every process of a distributed run builds the same sampler with the same seed, so all
    ranks draw the same task at every step without communicating.
    """

    def __init__(
        self,
        sizes: dict[str, int],
        strategy: str = "proportional",
        temperature: float = 1.0,
        seed: int = 0,
    ) -> None:
        if not sizes or any(size <= 0 for size in sizes.values()):
            raise ConfigError(f"TaskSampler needs tasks with at least one batch each, got {sizes}")
        self.tasks = list(sizes)
        self.strategy = strategy
        exponent = {"proportional": 1.0, "temperature": 1.0 / temperature}.get(strategy)
        if exponent is None and strategy != "round_robin":
            raise ConfigError(f"unknown task sampling strategy {strategy!r}")
        weights = torch.tensor([float(sizes[t]) for t in self.tasks], dtype=torch.float64)
        self._weights = weights ** (exponent or 0.0)
        self._generator = torch.Generator().manual_seed(seed)
        self._draws = 0

    @property
    def probabilities(self) -> dict[str, float]:
        """The long-run share of draws of each task."""
        shares = self._weights / self._weights.sum()
        return dict(zip(self.tasks, shares.tolist()))

    def __iter__(self) -> TaskSampler:
        return self

    def __next__(self) -> str:
        if self.strategy == "round_robin":
            index = self._draws % len(self.tasks)
        else:
            index = int(torch.multinomial(self._weights, 1, generator=self._generator))
        self._draws += 1
        return self.tasks[index]

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self._generator.get_state(), "draws": self._draws}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._generator.set_state(state["generator"])
        self._draws = int(state["draws"])
