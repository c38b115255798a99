"""AdamW without decay on biases and norms, and the warmup + decay learning-rate schedule."""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from kgmm.training.arguments import TrainingArguments


@dataclass
class LearningRateSchedule:
    """The factor on the base learning rate at optimizer step ``step`` (0-based).

    Linear warmup from 0 over ``warmup_steps``, then ``linear`` decay to 0 at
    ``total_steps``, ``cosine`` decay to 0, or ``constant`` (the schedules of Hugging Face's
    ``get_*_schedule_with_warmup``).
    """

    kind: str
    warmup_steps: int
    total_steps: int

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return step / max(1, self.warmup_steps)
        if self.kind == "constant":
            return 1.0
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        if self.kind == "cosine":
            return max(0.0, 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))))
        return max(0.0, 1.0 - progress)


def build_optimizer(model: nn.Module, args: TrainingArguments) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; tensors of fewer than 2 dimensions (biases,
    norm weights, gates) get no weight decay; ``args.learning_rates`` patterns set their own
    rate. Uses the fused kernel (CPU and CUDA)."""
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            weight_decay = args.weight_decay if parameter.ndim >= 2 else 0.0
            groups.setdefault((learning_rate_of(name, args), weight_decay), []).append(parameter)
    return torch.optim.AdamW(
        [{"params": p, "lr": lr, "weight_decay": wd} for (lr, wd), p in groups.items()],
        lr=args.learning_rate,
        fused=True,
    )


def learning_rate_of(name: str, args: TrainingArguments) -> float:
    """The rate of parameter ``name``: the first matching ``learning_rates`` pattern's."""
    for pattern, rate in args.learning_rates.items():
        if fnmatch.fnmatchcase(name, pattern):
            return rate
    return args.learning_rate


def build_scheduler(
    optimizer: torch.optim.Optimizer, args: TrainingArguments, total_steps: int
) -> LambdaLR:
    schedule = LearningRateSchedule(
        args.lr_scheduler, args.warmup_steps_for(total_steps), total_steps
    )
    return LambdaLR(optimizer, schedule)
