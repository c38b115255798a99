"""Online adaptation: fine-tune a deployed model on a few corrected samples without
forgetting, by replaying earlier data and anchoring the weights to the deployed ones.

``adapt`` runs a short :class:`Trainer` run over the feedback; every batch of feedback is
topped up with a fresh seeded draw from a replay set (``ReplayMixer``), and
``WeightAnchor`` adds the L2-SP penalty of Li et al. (2018),
``anchor_weight * sum ||theta - theta_deployed||^2`` over the trainable parameters.
Written by hand: the continual-learning libraries (avalanche) bring their own training loop
and model wrappers, not a callback for this Trainer.
"""

from __future__ import annotations

import json
import random
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from kgmm.errors import ConfigError, DataError
from kgmm.model import FusedModel
from kgmm.training.arguments import TrainingArguments
from kgmm.training.callbacks import TrainerCallback
from kgmm.training.trainer import METRICS_FILE, Trainer

if TYPE_CHECKING:
    from kgmm.model import ModelOutput

Collate = Callable[[list[dict]], dict[str, Any]]


class ReplayBuffer:
    """A fixed-size uniform sample of every sample ever added (reservoir sampling,
    Vitter's Algorithm R), seeded, for keeping served samples to replay later."""

    def __init__(self, capacity: int, seed: int = 0) -> None:
        if capacity < 1:
            raise ConfigError(f"ReplayBuffer capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.seen = 0
        self.samples: list[dict] = []
        self._random = random.Random(seed)

    def add(self, sample: dict) -> None:
        """Keep ``sample`` with probability ``capacity / seen`` (always while not full)."""
        self.seen += 1
        if len(self.samples) < self.capacity:
            self.samples.append(sample)
            return
        slot = self._random.randrange(self.seen)
        if slot < self.capacity:
            self.samples[slot] = sample

    def extend(self, samples: Iterable[dict]) -> None:
        for sample in samples:
            self.add(sample)

    def __len__(self) -> int:
        return len(self.samples)


class WeightAnchor(TrainerCallback):
    """L2-SP: adds ``weight * sum ||theta - theta_0||^2`` over the trainable parameters to
    every training loss; ``theta_0`` is ``reference`` (name -> tensor) or, by default, the
    weights when training starts."""

    def __init__(self, weight: float, reference: dict[str, Tensor] | None = None) -> None:
        if weight < 0:
            raise ConfigError(f"WeightAnchor weight must be >= 0, got {weight}")
        self.weight = weight
        self.reference = reference
        self._anchors: list[tuple[torch.nn.Parameter, Tensor]] = []

    def on_train_begin(self, trainer: Trainer) -> None:
        reference = self.reference
        if reference is None:
            reference = {name: p.detach() for name, p in trainer.model.named_parameters()}
        self._anchors = []
        for name, parameter in trainer.model.named_parameters():
            if not parameter.requires_grad:
                continue
            if name not in reference:
                raise ConfigError(f"WeightAnchor reference has no tensor for parameter {name!r}")
            anchor = reference[name].detach().to(parameter.device, torch.float32, copy=True)
            self._anchors.append((parameter, anchor))

    def extra_loss(
        self, trainer: Trainer, task: str, batch: dict[str, Any], output: ModelOutput
    ) -> Tensor | None:
        if self.weight == 0 or not self._anchors:
            return None
        return self.weight * self.distance()

    def distance(self) -> Tensor:
        """``sum ||theta - theta_0||^2`` now."""
        return sum(((p.float() - a) ** 2).sum() for p, a in self._anchors)


class ReplayMixer(TrainerCallback):
    """Appends ``per_batch`` samples drawn (seeded, without replacement) from ``replay`` to
    every batch of ``task`` before it is collated; the draws repeat run to run when batches
    are collated in the main process (``num_workers=0``)."""

    def __init__(self, task: str, replay: Sequence[dict], per_batch: int, seed: int = 0) -> None:
        if per_batch < 0:
            raise ConfigError(f"ReplayMixer per_batch must be >= 0, got {per_batch}")
        self.task = task
        self.replay = list(replay)
        self.per_batch = min(per_batch, len(self.replay))
        self.seed = seed

    def wrap_collator(self, trainer: Trainer, task: str, collator: Collate) -> Collate:
        if task != self.task or self.per_batch == 0:
            return collator
        draws = random.Random(self.seed)

        def collate(samples: list[dict]) -> dict[str, Any]:
            return collator([*samples, *draws.sample(self.replay, self.per_batch)])

        return collate


@dataclass
class AdaptResult:
    """What :func:`adapt` did: optimizer steps, the training loss of each step (feedback and
    replay, penalty included), the L2 distance of the trainable weights from the deployed
    ones, and the relative change ``||delta|| / ||theta_0||`` per top-level module."""

    steps: int
    losses: list[float]
    weight_distance: float
    relative_change: dict[str, float]


def adapt(
    model: FusedModel,
    feedback: Sequence[dict],
    task: str,
    replay: Sequence[dict] | ReplayBuffer | None = None,
    steps: int = 20,
    learning_rate: float = 5e-5,
    learning_rates: dict[str, float] | None = None,
    anchor_weight: float = 1.0,
    replay_ratio: float = 0.5,
    batch_size: int = 16,
    seed: int = 0,
    output_dir: str | Path | None = None,
    callbacks: Iterable[TrainerCallback] = (),
    **training: Any,
) -> AdaptResult:
    """Update ``model`` in place on ``feedback`` (corrected samples of ``task``).

    Each of the ``steps`` batches holds ``batch_size`` samples: a ``1 - replay_ratio`` share
    of feedback (reshuffled every epoch) and a ``replay_ratio`` share drawn from ``replay``
    (earlier training or served samples) afresh at every step, seeded by ``seed``; without
    ``replay`` a batch is feedback only. ``anchor_weight`` weighs the L2-SP penalty towards
    the weights ``model`` had when called (a sum over all trainable parameters, so its scale
    grows with the model). Weight decay is off (it would pull towards 0, not
    towards the deployed weights) and the learning rate is constant; ``training`` overrides
    other :class:`TrainingArguments` fields (``bf16``, ``device``...). Checkpoints go to
    ``output_dir`` (a temporary folder, removed afterwards, when None).
    """
    if not feedback:
        raise DataError("adapt needs at least one feedback sample")
    if not 0.0 <= replay_ratio < 1.0:
        raise ConfigError(f"replay_ratio must be in [0, 1), got {replay_ratio}")
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    replay_samples = list(replay.samples if isinstance(replay, ReplayBuffer) else replay or [])
    per_batch = round(batch_size * replay_ratio) if replay_samples else 0
    feedback_per_batch = max(1, min(len(feedback), batch_size - per_batch))
    deployed = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    with tempfile.TemporaryDirectory(prefix="kgmm-adapt-") as scratch:
        folder = Path(output_dir) if output_dir is not None else Path(scratch)
        fields: dict[str, Any] = {
            "output_dir": str(folder),
            "max_steps": steps,
            "batch_size": feedback_per_batch,
            "learning_rate": learning_rate,
            "learning_rates": learning_rates or {},
            "weight_decay": 0.0,
            "lr_scheduler": "constant",
            "logging_steps": 1,
            "save_total_limit": 1,
            "seed": seed,
            "progress_bar": False,
        }
        args = TrainingArguments(**{**fields, **training})
        anchor = WeightAnchor(anchor_weight, reference=deployed)
        mixer = ReplayMixer(task, replay_samples, per_batch, seed=seed)
        trainer = Trainer(
            model, {task: list(feedback)}, args=args, callbacks=[anchor, mixer, *callbacks]
        )
        result = trainer.train()
        losses = _training_losses(folder / METRICS_FILE)
    model.eval()
    with torch.no_grad():
        squared_distance = float(anchor.distance())
    return AdaptResult(
        steps=result.step,
        losses=losses,
        weight_distance=squared_distance**0.5,
        relative_change=_relative_change(model, deployed),
    )


def _training_losses(metrics: Path) -> list[float]:
    with metrics.open(encoding="utf-8") as lines:
        records = [json.loads(line) for line in lines]
    return [record["loss"] for record in records if record["split"] == "train"]


def _relative_change(model: FusedModel, deployed: dict[str, Tensor]) -> dict[str, float]:
    """``||theta - theta_0|| / ||theta_0||`` per top-level module (``encoders.text``,
    ``fusion``, ``heads.TASK``...)."""
    change: dict[str, list[float]] = {}
    for name, parameter in model.named_parameters():
        if name not in deployed:
            continue
        parts = name.split(".")
        module = ".".join(parts[:2]) if parts[0] in ("encoders", "heads") else parts[0]
        old = deployed[name].to(parameter.device, torch.float32)
        sums = change.setdefault(module, [0.0, 0.0])
        sums[0] += float(((parameter.detach().float() - old) ** 2).sum())
        sums[1] += float((old**2).sum())
    return {module: (d / max(n, 1e-12)) ** 0.5 for module, (d, n) in change.items()}
