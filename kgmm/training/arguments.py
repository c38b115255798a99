"""``TrainingArguments``: every knob of a training run, round-tripping through JSON and YAML."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from kgmm.device import valid_bf16
from kgmm.errors import ConfigError

LR_SCHEDULERS = ("linear", "cosine", "constant")
TASK_SAMPLING = ("proportional", "temperature", "round_robin")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class TrainingArguments:
    """How :class:`kgmm.training.Trainer` trains.

    Length: ``max_steps`` optimizer steps when > 0, else ``num_epochs`` passes over the data,
    where one epoch is the total number of batches of all tasks divided by
    ``gradient_accumulation_steps``.

    Batches: ``batch_size`` is per process and per micro-batch, one int for every task or a
    dict ``task -> size``; under ``torchrun`` the global batch is ``batch_size * world_size``.
    ``group_by_length`` sorts samples by text length inside shuffled mega-batches (50 batches)
    so padding is short, then shuffles the batch order.

    Tasks: each micro-batch comes from one task, drawn by ``task_sampling``:
    ``proportional`` (to the task's batches per epoch), ``temperature`` (to that number to the
    power ``1 / sampling_temperature``; large temperatures approach uniform) or
    ``round_robin`` (the tasks in turn; ``round_robin_shares`` gives a task several turns per
    cycle, spread evenly: ``{"mt": 5}`` draws mt five times for each other task's once, so a
    run of whole cycles gives each task an exact step count). ``task_weights`` multiplies
    each task's loss (default 1).

    Learning rates: ``learning_rate`` for every parameter, except those whose name matches a
    glob pattern of ``learning_rates`` (the first matching pattern wins), e.g.
    ``{"*cross_attn_gate*": 5e-2, "heads.*": 1e-3}``: the knowledge gates start at 0 and open
    faster with a larger rate; a fresh head often wants more than a pretrained encoder.

    Selection: ``metric_for_best_model`` names an evaluation metric ``"task/metric"``
    (e.g. ``"intent/accuracy"``); the best model is saved to ``output_dir/best`` and
    ``early_stopping_patience`` evaluations without improvement stop training.
    ``greater_is_better`` defaults to False for losses and True otherwise.

    Speed: ``bf16`` trains under bf16 autocast: ``True``, ``False``, or ``"auto"``, bf16
    where the device multiplies bf16 in hardware (:func:`kgmm.device.native_bf16`: a bf16
    GPU, or a CPU with AMX or AVX-512 BF16) and fp32 elsewhere, where bf16 matmuls are
    emulated (at 2-5% of fp32's speed on an AVX2 EPYC); ``compile`` runs
    :meth:`kgmm.FusedModel.compile_encoders` before the first step (fuses the encoders'
    casts and element-wise ops; measure it on your model: in the BANKING77 benchmark it made
    kgmm + KG 7-8% slower and text-only 0.90-1.08x; not with ``DifferentialPrivacy``, whose
    per-sample gradient hooks need the eager modules). ``lane_dropout`` (CPU runs; elsewhere a
    warning) swaps the model's ``nn.Dropout`` modules, in place, for
    :class:`kgmm.training.dropout.LaneDropout`: the same dropout with a quarter of a random
    draw per mask element (p rounded to a multiple of 2**-16); torch's CPU masks took 12-17%
    of a MiniLM step's op time in the BANKING77 benchmark.

    ``resume_from_checkpoint``: a checkpoint folder, or True for the newest complete
    ``checkpoint-*`` in ``output_dir`` (a fresh start when there is none).
    """

    output_dir: str = "runs/kgmm"
    max_steps: int = -1
    num_epochs: float = 1.0
    batch_size: int | dict[str, int] = 32
    eval_batch_size: int | None = None
    gradient_accumulation_steps: int = 1
    learning_rate: float = 5e-5
    learning_rates: dict[str, float] = field(default_factory=dict)
    weight_decay: float = 0.01
    warmup_ratio: float = 0.0
    warmup_steps: int = 0
    lr_scheduler: str = "linear"
    max_grad_norm: float | None = 1.0
    bf16: bool | str = False
    compile: bool = False
    lane_dropout: bool = False
    task_sampling: str = "proportional"
    sampling_temperature: float = 1.0
    task_weights: dict[str, float] = field(default_factory=dict)
    round_robin_shares: dict[str, int] = field(default_factory=dict)
    group_by_length: bool = False
    dataloader_drop_last: bool = False
    eval_steps: int = 0
    save_steps: int = 0
    save_total_limit: int | None = None
    metric_for_best_model: str | None = None
    greater_is_better: bool | None = None
    early_stopping_patience: int | None = None
    seed: int = 0
    num_workers: int = 0
    logging_steps: int = 10
    resume_from_checkpoint: str | bool | None = None
    device: str = "auto"
    progress_bar: bool = True

    def __post_init__(self) -> None:
        _one_of("lr_scheduler", self.lr_scheduler, LR_SCHEDULERS)
        _one_of("task_sampling", self.task_sampling, TASK_SAMPLING)
        _one_of("device", self.device, DEVICES)
        if not valid_bf16(self.bf16):
            raise ConfigError(f"bf16 must be true, false or 'auto', got {self.bf16!r}")
        sizes = self.batch_size.values() if isinstance(self.batch_size, dict) else [self.batch_size]
        if not sizes or any(not isinstance(s, int) or s < 1 for s in sizes):
            raise ConfigError(f"batch_size must be a positive int or task -> int, got {sizes}")
        for name in ("gradient_accumulation_steps", "logging_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "eval_steps", "save_steps", "num_workers"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.max_steps <= 0 and self.num_epochs <= 0:
            raise ConfigError("set max_steps > 0 or num_epochs > 0")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.sampling_temperature <= 0:
            raise ConfigError(f"sampling_temperature must be > 0, got {self.sampling_temperature}")
        negative = {t: w for t, w in self.task_weights.items() if w < 0}
        if negative:
            raise ConfigError(f"task_weights must be >= 0, got {negative}")
        bad = {t: n for t, n in self.round_robin_shares.items() if not isinstance(n, int) or n < 1}
        if bad:
            raise ConfigError(f"round_robin_shares must be integers >= 1, got {bad}")
        if self.round_robin_shares and self.task_sampling != "round_robin":
            raise ConfigError(
                f"round_robin_shares needs task_sampling='round_robin', got {self.task_sampling!r}"
            )
        if self.early_stopping_patience is not None and self.metric_for_best_model is None:
            raise ConfigError("early_stopping_patience needs metric_for_best_model")
        if self.metric_for_best_model is not None and "/" not in self.metric_for_best_model:
            raise ConfigError(
                f"metric_for_best_model is {self.metric_for_best_model!r}; name it "
                "'task/metric', e.g. 'intent/accuracy'"
            )
        if self.greater_is_better is None and self.metric_for_best_model is not None:
            self.greater_is_better = not self.metric_for_best_model.endswith("loss")

    def batch_size_of(self, task: str) -> int:
        """The per-process micro-batch size of ``task``."""
        if not isinstance(self.batch_size, dict):
            return self.batch_size
        if task not in self.batch_size:
            raise ConfigError(
                f"batch_size has no entry for task {task!r} (it has {sorted(self.batch_size)})"
            )
        return self.batch_size[task]

    def warmup_steps_for(self, total_steps: int) -> int:
        """``warmup_steps`` when set, else ``warmup_ratio`` of ``total_steps``."""
        return self.warmup_steps or int(self.warmup_ratio * total_steps)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingArguments:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown training fields {unknown}; known fields: {', '.join(sorted(known))}"
            )
        return cls(**data)

    def save(self, path: str | Path) -> None:
        """Write JSON, or YAML when the suffix is ``.yaml``/``.yml``."""
        path = Path(path)
        if path.suffix in (".yaml", ".yml"):
            path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        else:
            path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> TrainingArguments:
        """Read a file written by :meth:`save` (JSON or YAML by suffix)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
            data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
        except (OSError, json.JSONDecodeError, yaml.YAMLError) as error:
            raise ConfigError(f"{path}: cannot read training arguments ({error})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of training fields")
        return cls.from_dict(data)


def _one_of(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {choices}, got {value!r}")
