"""``Trainer``: joint multi-task training of a :class:`FusedModel`'s heads."""

from __future__ import annotations

import json
import math
import shutil
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from kgmm.data.batch import move_to
from kgmm.device import autocast, resolve_bf16, resolve_device
from kgmm.errors import CheckpointError, ConfigError, DataError
from kgmm.model import FusedModel
from kgmm.training.adapter_budget import adapter_callbacks
from kgmm.training.arguments import TrainingArguments
from kgmm.training.best_metric import BestMetricTracker
from kgmm.training.callbacks import TrainerCallback
from kgmm.training.checkpoint import (
    TRAINER_STATE_FILE,
    TRAINING_STATE_FILE,
    checkpoint_dir,
    latest_checkpoint,
    load_model_weights,
    load_state,
    prune_checkpoints,
    publish,
    remove_unfinished,
    rng_state_file,
    save_state,
    staging_dir,
)
from kgmm.training.distributed import DistributedContext
from kgmm.training.dropout import use_lane_dropout
from kgmm.training.evaluation import evaluate_task
from kgmm.training.metrics_log import MetricsLog
from kgmm.training.optimization import build_optimizer, build_scheduler
from kgmm.training.random_state import get_rng_state, seed_everything, set_rng_state
from kgmm.training.task_sampler import TaskSampler
from kgmm.training.task_stream import TaskStream

METRICS_FILE = "metrics.jsonl"
BEST_DIR = "best"

Samples = Sequence[dict]


@dataclass
class TrainResult:
    """What :meth:`Trainer.train` did: the last step, the mean of the training losses it
    logged, the best selection metric and its step, and the final checkpoint folder."""

    step: int
    training_loss: float | None
    best_metric: float | None
    best_step: int | None
    stopped_early: bool
    checkpoint: Path | None


class _TaskLoss(nn.Module):
    """The model's loss on one batch of one task, plus the callbacks' extra terms: the only
    output DDP has to follow."""

    def __init__(self, trainer: Trainer) -> None:
        super().__init__()
        self.model = trainer.model
        self._trainer = [trainer]  # a list, so the trainer is not registered as a submodule

    def forward(self, task: str, batch: dict[str, Any]) -> torch.Tensor:
        output = self.model(task=task, **batch)
        loss = output.loss
        if loss is None:
            raise DataError(f"task {task!r}: the head returned no loss; are targets missing?")
        trainer = self._trainer[0]
        for callback in trainer.callbacks:
            term = callback.extra_loss(trainer, task, batch, output)
            if term is not None:
                loss = loss + term
        return loss


class Trainer:
    """Trains ``model`` on ``train`` (task -> samples or map-style dataset of sample dicts),
    drawing each micro-batch's task with a seeded :class:`TaskSampler`.

    Single-task training is ``train={"task": samples}``.

    * **Distributed.** Under ``torchrun`` every process runs the same script: the Trainer
      joins the process group, wraps the model in DDP, gives each rank its ``batch_size``
      slice of every global batch (``batch_size * world_size``), draws the same task on every
      rank (same seeded sampler), seeds dropout with ``seed + rank``, and only rank 0 logs,
      evaluates (others wait for its metrics) and saves.
    * **Checkpoints.** ``output_dir/checkpoint-STEP`` every ``save_steps`` and at the end.
      Resuming (``resume_from_checkpoint``) restores weights, optimizer, scheduler, RNGs, the
      task sampler and each task's data position, so the final parameters equal those of an
      uninterrupted run bit for bit on the same machine and thread count. Data-loader workers
      do not change that: batches are fixed in the main process by (seed, epoch, position).
    * **Log.** ``output_dir/metrics.jsonl`` (``split`` is ``train`` or ``eval``); a fresh,
      non-resumed run replaces it.
    """

    def __init__(
        self,
        model: FusedModel,
        train: dict[str, Samples],
        eval: dict[str, Samples] | None = None,
        args: TrainingArguments | None = None,
        callbacks: Iterable[TrainerCallback] = (),
    ) -> None:
        self.model = model
        self.args = args if args is not None else TrainingArguments()
        self.train_data = dict(train)
        self.eval_data = dict(eval or {})
        self.callbacks = list(callbacks)
        self.callbacks += adapter_callbacks(model, self.callbacks)
        self._check_tasks()
        use_cuda = resolve_device(self.args.device).type == "cuda"
        self.distributed = DistributedContext.from_environment(use_cuda)
        self.device = resolve_device(self.args.device, self.distributed.local_rank)
        self.bf16 = resolve_bf16(self.args.bf16, self.device)
        self.model.to(self.device)
        self.output_dir = Path(self.args.output_dir)
        self.log = MetricsLog(self.output_dir / METRICS_FILE, enabled=self.distributed.is_main)
        self.step = 0
        self.should_stop = False
        self.max_grad_norm = self.args.max_grad_norm
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        self.tracker = (
            BestMetricTracker(self.args.greater_is_better, self.args.early_stopping_patience)
            if self.args.metric_for_best_model
            else None
        )

    # ------------------------------------------------------------------ checks
    def _check_tasks(self) -> None:
        heads = sorted(self.model.heads)
        if not self.train_data:
            raise ConfigError("train is empty; pass {task: samples} for at least one task")
        for role, data in (("train", self.train_data), ("eval", self.eval_data)):
            for task, samples in data.items():
                if task not in self.model.heads:
                    raise ConfigError(f"{role} task {task!r} has no head; the model has {heads}")
                if len(samples) == 0:
                    raise DataError(f"{role} data of task {task!r} is empty")
        for field_name in ("task_weights", "round_robin_shares"):
            unknown = sorted(set(getattr(self.args, field_name)) - set(self.train_data))
            if unknown:
                raise ConfigError(f"{field_name} name tasks {unknown} that have no training data")
        for task in self.train_data:
            self.args.batch_size_of(task)
        metric = self.args.metric_for_best_model
        if metric is not None and metric.split("/")[0] not in self.eval_data:
            raise ConfigError(
                f"metric_for_best_model {metric!r} needs eval data for task "
                f"{metric.split('/')[0]!r}; eval has {sorted(self.eval_data)}"
            )

    # ------------------------------------------------------------------ training
    def train(self) -> TrainResult:
        """Train to ``max_steps`` (or ``num_epochs``), early stopping, or a callback's stop."""
        args, main = self.args, self.distributed.is_main
        streams = self._build_streams()
        sampler = TaskSampler(
            {task: stream.batches_per_epoch for task, stream in streams.items()},
            args.task_sampling,
            args.sampling_temperature,
            seed=args.seed,
            shares=args.round_robin_shares,
        )
        batches = sum(stream.batches_per_epoch for stream in streams.values())
        self.steps_per_epoch = max(1, math.ceil(batches / args.gradient_accumulation_steps))
        total_steps = (
            args.max_steps
            if args.max_steps > 0
            else max(1, math.ceil(args.num_epochs * self.steps_per_epoch))
        )
        self.optimizer = build_optimizer(self.model, args)
        self.scheduler = build_scheduler(self.optimizer, args, total_steps)
        if main:
            remove_unfinished(self.output_dir)
        resume = self._checkpoint_to_resume()
        self._seconds_before = 0.0
        self._training_seconds_before = 0.0
        self._paused = 0.0  # seconds spent evaluating and saving in this call
        self._ended: float | None = None  # when this call returned
        if resume is not None:
            self._load_checkpoint(resume, streams, sampler)
        else:
            self.step = 0
            if main and self.log.path.exists():
                self.log.path.unlink()
            seed_everything(args.seed + self.distributed.rank)
        self.distributed.barrier()
        for callback in self.callbacks:
            callback.on_train_begin(self)

        if args.lane_dropout:  # after the callbacks, so adapters' dropouts are swapped too
            if self.device.type == "cpu":
                use_lane_dropout(self.model)
            else:
                warnings.warn(
                    f"lane_dropout is for CPU runs; on {self.device.type} torch's dropout "
                    "stays (its fused kernel is faster there)",
                    stacklevel=2,
                )
        if args.compile:
            self.model.compile_encoders()
        wrapped = self._wrapped = self.distributed.wrap(_TaskLoss(self), self.device)
        self.model.train()
        self._started = time.perf_counter()
        self._reset_loss_window()
        run_loss, run_steps = 0.0, 0
        last_saved = self.step if resume is not None else None
        last_evaluated = None
        self.should_stop = False
        stopped_early = False
        bar = tqdm(
            total=total_steps,
            initial=self.step,
            desc="training",
            disable=not (main and args.progress_bar),
            dynamic_ncols=True,
        )
        while self.step < total_steps and not self.should_stop:
            logs = self._optimizer_step(wrapped, streams, sampler)
            bar.update(1)
            if self.step % args.logging_steps == 0 or self.step == total_steps:
                record = self._log_training()
                run_loss, run_steps = run_loss + record["loss"], run_steps + 1
                bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}")
            if self.eval_data and args.eval_steps and self.step % args.eval_steps == 0:
                stopped_early = self._evaluate_and_select() or stopped_early
                last_evaluated = self.step
            if args.save_steps and self.step % args.save_steps == 0:
                self._save_checkpoint(streams, sampler)
                last_saved = self.step
            for callback in self.callbacks:
                callback.on_step_end(self, self.step, logs)
        bar.close()
        if self.eval_data and last_evaluated != self.step:
            stopped_early = self._evaluate_and_select() or stopped_early
        if last_saved != self.step:
            self._save_checkpoint(streams, sampler)
        tracker = self.tracker
        self._ended = time.perf_counter()
        return TrainResult(
            step=self.step,
            training_loss=run_loss / run_steps if run_steps else None,
            best_metric=tracker.best if tracker else None,
            best_step=tracker.best_step if tracker else None,
            stopped_early=stopped_early,
            checkpoint=checkpoint_dir(self.output_dir, self.step),
        )

    def _build_streams(self) -> dict[str, TaskStream]:
        args, distributed = self.args, self.distributed
        return {
            task: TaskStream(
                task,
                samples,
                self._collator(task),
                args.batch_size_of(task),
                seed=args.seed,
                rank=distributed.rank,
                world_size=distributed.world_size,
                drop_last=args.dataloader_drop_last,
                group_by_length=args.group_by_length,
                num_workers=args.num_workers,
                pin_memory=self.device.type == "cuda",
            )
            for task, samples in self.train_data.items()
        }

    def _collator(self, task: str) -> Callable[[list[dict]], dict[str, Any]]:
        collator = self.model.collator(task)
        for callback in self.callbacks:
            collator = callback.wrap_collator(self, task, collator)
        return collator

    def compute_loss(self, task: str, batch: dict[str, Any]) -> torch.Tensor:
        """The training loss of one collated ``batch`` (on the trainer's device) with the
        callbacks' extra terms, under the run's autocast; only valid inside :meth:`train`."""
        with autocast(self.device, self.bf16):
            return self._wrapped(task, batch)

    def _optimizer_step(
        self, wrapped: nn.Module, streams: dict[str, TaskStream], sampler: TaskSampler
    ) -> dict[str, Any]:
        """One optimizer step over ``gradient_accumulation_steps`` micro-batches."""
        args = self.args
        accumulation = args.gradient_accumulation_steps
        for callback in self.callbacks:
            callback.on_step_begin(self, self.step + 1)
        self.optimizer.zero_grad(set_to_none=True)
        for index in range(accumulation):
            task = next(sampler)
            batch = move_to(streams[task].next_batch(), self.device)
            defer_sync = self.distributed.enabled and index < accumulation - 1
            with wrapped.no_sync() if defer_sync else nullcontext():
                loss = self.compute_loss(task, batch)
                weight = args.task_weights.get(task, 1.0)
                (loss * (weight / accumulation)).backward()
                for callback in self.callbacks:
                    callback.on_backward(self, task, batch, loss)
            self._loss_sums[task] = self._loss_sums.get(task, 0.0) + loss.detach().float()
            self._loss_counts[task] = self._loss_counts.get(task, 0) + 1
        logs: dict[str, Any] = {}
        if self.max_grad_norm is not None:
            self._grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
            logs["grad_norm"] = self._grad_norm
        logs["lr"] = self._lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return logs

    def _reset_loss_window(self) -> None:
        self._loss_sums: dict[str, torch.Tensor] = {}
        self._loss_counts: dict[str, int] = {}
        self._grad_norm: torch.Tensor | None = None

    def _log_training(self) -> dict[str, Any]:
        """Write one ``split: train`` record (losses averaged over ranks and the window)."""
        tasks = sorted(self._loss_sums)
        sums = self.distributed.mean(torch.stack([self._loss_sums[t] for t in tasks]))
        counts = [self._loss_counts[t] for t in tasks]
        record: dict[str, Any] = {
            "split": "train",
            "step": self.step,
            "epoch": self.step / self.steps_per_epoch,
            "lr": self._lr,
            "loss": float(sums.sum()) / sum(counts),
            **{f"loss/{t}": float(s) / n for t, s, n in zip(tasks, sums, counts)},
        }
        if self._grad_norm is not None:
            record["grad_norm"] = float(self._grad_norm)
        record["seconds"] = self._seconds()
        record["training_seconds"] = self.training_seconds
        record["fusion_gates"] = self.model.fusion.gate_values()
        for callback in self.callbacks:
            callback.on_log(self, record)
        self.log.write(record)
        self._reset_loss_window()
        return record

    def _seconds(self) -> float:
        return self._seconds_before + time.perf_counter() - self._started

    @property
    def training_seconds(self) -> float:
        """Wall seconds of :meth:`train` so far without evaluations and checkpoint saving
        (resumed runs include the time before the checkpoint)."""
        now = self._ended or time.perf_counter()
        return self._training_seconds_before + now - self._started - self._paused

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, task: str | None = None) -> dict[str, float]:
        """Metrics ``{"task/metric": value}`` on the eval data of ``task`` (default: all).

        Under ``torchrun`` rank 0 evaluates and every rank receives its metrics.
        """
        tasks = [task] if task is not None else list(self.eval_data)
        missing = [t for t in tasks if t not in self.eval_data]
        if not tasks or missing:
            raise ConfigError(
                f"no evaluation data for {missing or 'any task'}; pass eval={{task: samples}}"
            )
        metrics: dict[str, float] = {}
        if self.distributed.is_main:
            for name in tasks:
                metrics.update(
                    evaluate_task(
                        self.model,
                        name,
                        self.eval_data[name],
                        self._eval_batch_size(name),
                        self.device,
                        self.bf16,
                    )
                )
        return self.distributed.broadcast(metrics)

    def predict(self, samples: Samples, task: str) -> list[Any]:
        """``model.predict`` with the evaluation batch size."""
        return self.model.predict(list(samples), task, batch_size=self._eval_batch_size(task))

    def _eval_batch_size(self, task: str) -> int:
        size = self.args.eval_batch_size or self.args.batch_size
        return size if isinstance(size, int) else size.get(task, max(size.values()))

    def _evaluate_and_select(self) -> bool:
        """Evaluate, log, save a new best model; True when early stopping ends training."""
        paused_at, training_seconds = time.perf_counter(), self.training_seconds
        metrics = self.evaluate()
        self._paused += time.perf_counter() - paused_at
        paused_at = time.perf_counter()  # saving the best model is not training either
        self.log.write(
            {
                "split": "eval",
                "step": self.step,
                "epoch": self.step / self.steps_per_epoch,
                "seconds": self._seconds(),
                "training_seconds": training_seconds,
                **metrics,
            }
        )
        for callback in self.callbacks:
            callback.on_evaluate(self, self.step, metrics)
        if self.tracker is None:
            self._paused += time.perf_counter() - paused_at
            return False
        name = self.args.metric_for_best_model
        if name not in metrics:
            raise ConfigError(
                f"metric_for_best_model {name!r} is not an evaluation metric; "
                f"available: {sorted(metrics)}"
            )
        if self.tracker.update(metrics[name], self.step) and self.distributed.is_main:
            best = self.output_dir / BEST_DIR
            staging = staging_dir(best)
            shutil.rmtree(staging, ignore_errors=True)
            self.model.save_pretrained(staging)
            publish(staging, best)
        self.distributed.barrier()
        self._paused += time.perf_counter() - paused_at
        if self.tracker.should_stop:
            self.should_stop = True
        return self.tracker.should_stop

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint_to_resume(self) -> Path | None:
        choice = self.args.resume_from_checkpoint
        if choice is None or choice is False:
            return None
        if choice is True or choice == "latest":
            return latest_checkpoint(self.output_dir)
        folder = Path(choice)
        if not (folder / TRAINING_STATE_FILE).is_file():
            raise CheckpointError(
                f"{folder}: not a training checkpoint (no {TRAINING_STATE_FILE}); pass a "
                f"checkpoint-STEP folder or True for the newest in {self.output_dir}"
            )
        return folder

    def _save_checkpoint(self, streams: dict[str, TaskStream], sampler: TaskSampler) -> None:
        """Write ``checkpoint-STEP`` through a staging folder renamed into place last."""
        paused_at = time.perf_counter()
        final = checkpoint_dir(self.output_dir, self.step)
        staging = staging_dir(final)
        main = self.distributed.is_main
        if main:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
        self.distributed.barrier()
        save_state(get_rng_state(), rng_state_file(staging, self.distributed.rank))
        self.distributed.barrier()
        if main:
            self.model.save_pretrained(staging)
            state = {
                "step": self.step,
                "seconds": self._seconds(),
                "training_seconds": self.training_seconds,
                "world_size": self.distributed.world_size,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "task_sampler": sampler.state_dict(),
                "streams": {task: stream.state_dict() for task, stream in streams.items()},
                "best": self.tracker.state_dict() if self.tracker else None,
            }
            save_state(state, staging / TRAINING_STATE_FILE)
            summary = {
                "step": self.step,
                "epoch": self.step / self.steps_per_epoch,
                "best_metric": self.tracker.best if self.tracker else None,
                "best_step": self.tracker.best_step if self.tracker else None,
                "args": self.args.to_dict(),
            }
            (staging / TRAINER_STATE_FILE).write_text(json.dumps(summary, indent=2) + "\n")
            publish(staging, final)
            if self.args.save_total_limit:
                prune_checkpoints(self.output_dir, self.args.save_total_limit)
        self.distributed.barrier()
        self._paused += time.perf_counter() - paused_at

    def _load_checkpoint(
        self, folder: Path, streams: dict[str, TaskStream], sampler: TaskSampler
    ) -> None:
        load_model_weights(self.model, folder)
        state = load_state(folder / TRAINING_STATE_FILE)
        missing = sorted(set(streams) - set(state["streams"]))
        if missing:
            raise CheckpointError(f"{folder} has no data position for tasks {missing}")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        sampler.load_state_dict(state["task_sampler"])
        for task, stream in streams.items():
            stream.load_state_dict(state["streams"][task])
        if self.tracker is not None and state["best"] is not None:
            self.tracker.load_state_dict(state["best"])
        self.step = int(state["step"])
        self._seconds_before = float(state["seconds"])
        self._training_seconds_before = float(state.get("training_seconds", state["seconds"]))
        rng_file = rng_state_file(folder, self.distributed.rank)
        set_rng_state(load_state(rng_file if rng_file.exists() else rng_state_file(folder, 0)))
        self.log.truncate_after(self.step)
