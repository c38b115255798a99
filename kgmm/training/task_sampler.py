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
    * ``round_robin``: the tasks in turn, in the order of ``sizes``; ``shares`` (task ->
      turns per cycle, default 1) spreads a task's extra turns evenly over the cycle.

    Every process of a distributed run builds the same sampler with the same seed, so all
    ranks draw the same task at every step without communicating.
    """

    def __init__(
        self,
        sizes: dict[str, int],
        strategy: str = "proportional",
        temperature: float = 1.0,
        seed: int = 0,
        shares: dict[str, int] | None = None,
    ) -> None:
        if not sizes or any(size <= 0 for size in sizes.values()):
            raise ConfigError(f"TaskSampler needs tasks with at least one batch each, got {sizes}")
        self.tasks = list(sizes)
        self._cycle = _round_robin_cycle(self.tasks, shares or {})
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
            index = self._cycle[self._draws % len(self._cycle)]
        else:
            index = int(torch.multinomial(self._weights, 1, generator=self._generator))
        self._draws += 1
        return self.tasks[index]

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self._generator.get_state(), "draws": self._draws}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._generator.set_state(state["generator"])
        self._draws = int(state["draws"])


def _round_robin_cycle(tasks: list[str], shares: dict[str, int]) -> list[int]:
    """One cycle of task indices in which task ``t`` appears ``shares.get(t, 1)`` times,
    spread evenly (smooth weighted round robin: each turn goes to the task furthest behind
    its share)."""
    unknown = sorted(set(shares) - set(tasks))
    if unknown:
        raise ConfigError(f"round-robin shares name tasks {unknown}; the tasks are {tasks}")
    weights = [shares.get(task, 1) for task in tasks]
    credit = [0] * len(tasks)
    cycle = []
    for _ in range(sum(weights)):
        credit = [c + w for c, w in zip(credit, weights)]
        index = max(range(len(tasks)), key=credit.__getitem__)  # ties: the earlier task
        credit[index] -= sum(weights)
        cycle.append(index)
    return cycle
