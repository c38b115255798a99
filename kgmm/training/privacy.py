"""Differential privacy (DP-SGD) through ``opacus``: per-sample clipping, noise, accounting."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import torch
from opacus import GradSampleModule
from opacus.accountants import PRVAccountant, RDPAccountant
from opacus.optimizers import DPOptimizer

from kgmm.errors import ConfigError
from kgmm.training.callbacks import TrainerCallback

if TYPE_CHECKING:
    from kgmm.training.trainer import Trainer

ACCOUNTANTS = {"rdp": RDPAccountant, "prv": PRVAccountant}


class DifferentialPrivacy(TrainerCallback):
    """Train with DP-SGD: every sample's gradient is clipped to ``max_grad_norm``, Gaussian
    noise of standard deviation ``noise_multiplier * max_grad_norm`` is added to their sum,
    and an accountant (``rdp`` or ``prv``) tracks the privacy spent; ``epsilon`` at
    ``delta`` is added to every training log record.

    Use it with a frozen text encoder (an adapter such as LoRA, or ``freeze=True``): opacus
    keeps one gradient per sample for each trainable parameter, so the heads, the fusion
    module and LoRA matrices are cheap, a whole encoder is not.

    Sampling: the Trainer draws fixed-size shuffled batches, not the Poisson sampling the
    analysis assumes; the accountant's sample rate is ``batch_size / len(train data)`` (the
    largest over tasks when several train), the common approximation (as in opacus with
    ``poisson_sampling=False``). Every optimizer step is counted at that rate, which
    over-counts for tasks that are not drawn at every step.

    Not supported (ConfigError): ``gradient_accumulation_steps > 1`` and ``torchrun``
    (DDP). Under ``bf16`` the per-sample gradients are computed from bf16 activations and
    clipped in float32 (the check is in ``tests/test_privacy.py``).
    """

    def __init__(
        self,
        noise_multiplier: float,
        max_grad_norm: float,
        delta: float = 1e-5,
        accountant: str = "rdp",
        seed: int | None = None,
    ) -> None:
        if noise_multiplier < 0:
            raise ConfigError(f"noise_multiplier must be >= 0, got {noise_multiplier}")
        if max_grad_norm <= 0:
            raise ConfigError(f"max_grad_norm must be > 0, got {max_grad_norm}")
        if not 0 < delta < 1:
            raise ConfigError(f"delta must be in (0, 1), got {delta}")
        if accountant not in ACCOUNTANTS:
            raise ConfigError(f"accountant must be one of {tuple(ACCOUNTANTS)}, got {accountant!r}")
        self.noise_multiplier = noise_multiplier
        self.max_grad_norm = max_grad_norm
        self.delta = delta
        self.accountant = ACCOUNTANTS[accountant]()
        self.seed = seed
        self.sample_rate: float | None = None
        self._grad_sample: GradSampleModule | None = None

    def on_train_begin(self, trainer: Trainer) -> None:
        args = trainer.args
        if args.gradient_accumulation_steps > 1:
            raise ConfigError(
                "DifferentialPrivacy needs gradient_accumulation_steps=1 (each optimizer step "
                "must clip and noise one batch); raise batch_size instead"
            )
        if trainer.distributed.enabled:
            raise ConfigError("DifferentialPrivacy does not support torchrun/DDP training yet")
        if args.compile:
            raise ConfigError(
                "DifferentialPrivacy needs eager modules for its per-sample gradient hooks; "
                "set compile=False"
            )
        self.sample_rate = max(
            args.batch_size_of(task) / len(samples) for task, samples in trainer.train_data.items()
        )
        if self._grad_sample is not None:
            self._grad_sample.remove_hooks()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*full_backward_hook.*")
            self._grad_sample = GradSampleModule(trainer.model, batch_first=True)
        generator = None if self.seed is None else torch.Generator().manual_seed(self.seed)
        trainer.optimizer = DPOptimizer(
            trainer.optimizer,
            noise_multiplier=self.noise_multiplier,
            max_grad_norm=self.max_grad_norm,
            expected_batch_size=max(args.batch_size_of(t) for t in trainer.train_data),
            loss_reduction="mean",
            generator=generator,
        )
        if trainer.step:  # resumed: the steps already taken spent privacy too
            self.accountant.history = [(self.noise_multiplier, self.sample_rate, trainer.step)]
        trainer.optimizer.attach_step_hook(self.accountant.get_optimizer_hook_fn(self.sample_rate))
        trainer.max_grad_norm = None  # clipping is per sample, inside the DP optimizer

    def on_backward(
        self, trainer: Trainer, task: str, batch: dict[str, Any], loss: torch.Tensor
    ) -> None:
        """Give parameters this batch did not reach (another task's head, cross-attention
        when no entity was linked) zero per-sample gradients, which the DP optimizer needs."""
        for parameter in trainer.model.parameters():
            if parameter.requires_grad and getattr(parameter, "grad_sample", None) is None:
                parameter.grad_sample = parameter.new_zeros(batch["batch_size"], *parameter.shape)
                if parameter.grad is None:
                    parameter.grad = torch.zeros_like(parameter)

    def on_log(self, trainer: Trainer, record: dict[str, Any]) -> None:
        record["epsilon"] = self.epsilon()

    def epsilon(self, delta: float | None = None) -> float:
        """The ε spent so far at ``delta`` (default: this callback's)."""
        if not self.accountant.history:
            return 0.0
        return float(self.accountant.get_epsilon(delta=self.delta if delta is None else delta))
