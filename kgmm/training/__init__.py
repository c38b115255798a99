"""Multi-task training: ``Trainer``, ``TrainingArguments``, callbacks, checkpoints."""

from kgmm.training.arguments import TrainingArguments
from kgmm.training.callbacks import TrainerCallback
from kgmm.training.checkpoint import latest_checkpoint
from kgmm.training.evaluation import evaluate_task
from kgmm.training.optimization import LearningRateSchedule
from kgmm.training.run_config import trainer_from_config
from kgmm.training.run_environment import run_environment
from kgmm.training.task_sampler import TaskSampler
from kgmm.training.trainer import Trainer, TrainResult

__all__ = [
    "LearningRateSchedule",
    "TaskSampler",
    "TrainResult",
    "Trainer",
    "TrainerCallback",
    "TrainingArguments",
    "evaluate_task",
    "latest_checkpoint",
    "run_environment",
    "trainer_from_config",
]
