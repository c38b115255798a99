"""Multi-task training: ``Trainer``, ``TrainingArguments``, callbacks, checkpoints."""

from kgmm.device import autocast, native_bf16, resolve_bf16
from kgmm.training.adapter_budget import AdaLoraBudget
from kgmm.training.adversarial import AdversarialTraining, embedding_attack_accuracy
from kgmm.training.arguments import TrainingArguments
from kgmm.training.augmentation import Augmentation
from kgmm.training.callbacks import TrainerCallback
from kgmm.training.checkpoint import latest_checkpoint
from kgmm.training.distillation import Distillation
from kgmm.training.dropout import LaneDropout, use_lane_dropout
from kgmm.training.evaluation import evaluate_task
from kgmm.training.online import AdaptResult, ReplayBuffer, ReplayMixer, WeightAnchor, adapt
from kgmm.training.optimization import LearningRateSchedule
from kgmm.training.privacy import DifferentialPrivacy
from kgmm.training.run_config import trainer_from_config
from kgmm.training.run_environment import (
    arguments_record,
    finish_run,
    run_environment,
    write_results,
)
from kgmm.training.task_sampler import TaskSampler
from kgmm.training.time_budget import TimeBudget
from kgmm.training.trainer import Trainer, TrainResult

__all__ = [
    "AdaLoraBudget",
    "AdaptResult",
    "AdversarialTraining",
    "Augmentation",
    "DifferentialPrivacy",
    "Distillation",
    "LaneDropout",
    "LearningRateSchedule",
    "ReplayBuffer",
    "ReplayMixer",
    "TaskSampler",
    "TimeBudget",
    "TrainResult",
    "Trainer",
    "TrainerCallback",
    "TrainingArguments",
    "WeightAnchor",
    "adapt",
    "arguments_record",
    "autocast",
    "embedding_attack_accuracy",
    "evaluate_task",
    "finish_run",
    "latest_checkpoint",
    "native_bf16",
    "resolve_bf16",
    "run_environment",
    "write_results",
    "trainer_from_config",
    "use_lane_dropout",
]
