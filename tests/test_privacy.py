"""DP-SGD through opacus as a Trainer callback: accounting, per-sample clipping, LoRA."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import import_benchmark, shared_dataset
from training_run import build_model, make_samples

from kgmm import AdapterConfig, ConfigError, FusedModel
from kgmm.training import DifferentialPrivacy, Trainer, TrainerCallback, TrainingArguments

REPO = Path(__file__).resolve().parents[1]
SAMPLES = make_samples("intent", 32, seed=0)


def frozen_encoder_model() -> FusedModel:
    model = build_model(dropout=0.0, tasks=("intent",))
    for parameter in model.encoders.parameters():
        parameter.requires_grad_(False)
    return model


def train(model: FusedModel, tmp_path: Path, privacy: DifferentialPrivacy, steps: int, **fields):
    defaults = {
        "output_dir": str(tmp_path / "run"),
        "max_steps": steps,
        "batch_size": 8,
        "learning_rate": 1e-2,
        "device": "cpu",
        "progress_bar": False,
        "logging_steps": 2,
    }
    args = TrainingArguments(**{**defaults, **fields})
    callbacks = [privacy, *fields.pop("callbacks", [])] if "callbacks" in fields else [privacy]
    trainer = Trainer(model, {"intent": SAMPLES}, args=args, callbacks=callbacks)
    trainer.train()
    return trainer


def test_epsilon_is_logged_finite_grows_with_steps_and_shrinks_with_noise(tmp_path):
    short = DifferentialPrivacy(noise_multiplier=1.0, max_grad_norm=1.0)
    train(frozen_encoder_model(), tmp_path, short, steps=4)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    logged = [r["epsilon"] for r in records if r["split"] == "train"]
    assert len(logged) == 2 and 0 < logged[0] < logged[1] < 100
    assert short.epsilon() == pytest.approx(logged[-1])
    assert short.sample_rate == 8 / 32
    longer = DifferentialPrivacy(noise_multiplier=1.0, max_grad_norm=1.0)
    train(frozen_encoder_model(), tmp_path, longer, steps=8)
    noisier = DifferentialPrivacy(noise_multiplier=2.0, max_grad_norm=1.0)
    train(frozen_encoder_model(), tmp_path, noisier, steps=4)
    assert longer.epsilon() > short.epsilon() > noisier.epsilon() > 0
    assert short.epsilon(delta=1e-3) < short.epsilon()


class GradientNorm(TrainerCallback):
    """Records the norm of the gradient the optimizer stepped with."""

    def __init__(self) -> None:
        self.norms: list[float] = []

    def on_step_end(self, trainer, step, logs) -> None:
        grads = [p.grad for p in trainer.model.parameters() if p.grad is not None]
        self.norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))


def test_per_sample_clipping_bounds_the_gradient_and_replaces_batch_clipping(tmp_path):
    plain = GradientNorm()
    args = TrainingArguments(
        output_dir=str(tmp_path / "plain"), max_steps=3, batch_size=8, device="cpu",
        max_grad_norm=None, progress_bar=False,
    )  # fmt: skip
    Trainer(frozen_encoder_model(), {"intent": SAMPLES}, args=args, callbacks=[plain]).train()
    assert min(plain.norms) > 0.1
    clipped = GradientNorm()
    privacy = DifferentialPrivacy(noise_multiplier=0.0, max_grad_norm=1e-3)
    trainer = Trainer(
        frozen_encoder_model(),
        {"intent": SAMPLES},
        args=TrainingArguments(
            output_dir=str(tmp_path / "dp"),
            max_steps=3,
            batch_size=8,
            device="cpu",
            progress_bar=False,
        ),  # fmt: skip
        callbacks=[privacy, clipped],
    )
    trainer.train()
    assert trainer.max_grad_norm is None
    # the mean of 8 per-sample gradients, each clipped to norm 1e-3
    assert max(clipped.norms) <= 1e-3 * (1 + 1e-4)
    assert min(clipped.norms) > 1e-5


def test_dp_training_of_lora_on_a_frozen_text_encoder(tmp_path):
    model = build_model(dropout=0.0, tasks=("intent",))
    model.add_adapter(AdapterConfig(method="lora", r=2, dropout=0.0, trainable=("heads.*",)))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    privacy = DifferentialPrivacy(noise_multiplier=0.5, max_grad_norm=1.0, seed=0)
    train(model, tmp_path, privacy, steps=4)
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}
    assert any(n.startswith("encoders.text.") and "lora_B" in n for n in changed)
    assert any(n.startswith("fusion.") and "lora_B" in n for n in changed)
    assert all("lora_" in n or n.startswith("heads.") for n in changed)
    assert 0 < privacy.epsilon() < float("inf")


def test_bf16_autocast_trains_with_dp(tmp_path):
    privacy = DifferentialPrivacy(noise_multiplier=1.0, max_grad_norm=1.0)
    model = frozen_encoder_model()
    before = model.heads["intent"].state_dict()["mlp.1.weight"].clone()
    train(model, tmp_path, privacy, steps=2, bf16=True)
    assert not torch.equal(before, model.heads["intent"].state_dict()["mlp.1.weight"])
    assert 0 < privacy.epsilon() < float("inf")


def test_unsupported_settings_are_config_errors(tmp_path):
    privacy = DifferentialPrivacy(noise_multiplier=1.0, max_grad_norm=1.0)
    with pytest.raises(ConfigError, match="gradient_accumulation_steps=1"):
        train(frozen_encoder_model(), tmp_path, privacy, steps=2, gradient_accumulation_steps=2)
    with pytest.raises(ConfigError, match="set compile=False"):
        train(frozen_encoder_model(), tmp_path, privacy, steps=2, compile=True)
    with pytest.raises(ConfigError, match="max_grad_norm must be > 0"):
        DifferentialPrivacy(noise_multiplier=1.0, max_grad_norm=0.0)
    with pytest.raises(ConfigError, match="accountant must be one of"):
        DifferentialPrivacy(noise_multiplier=1.0, max_grad_norm=1.0, accountant="gdp")


@pytest.mark.data
def test_quick_benchmark_reports_epsilon_per_noise_level(tmp_path):
    data = shared_dataset("banking77")
    module = import_benchmark("privacy")
    out = tmp_path / "privacy.json"
    module.main(["--quick", "--data-dir", str(data), "--out", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert rows[0]["noise_multiplier"] is None and rows[0]["epsilon"] is None
    assert rows[1]["epsilon"] > rows[2]["epsilon"] > 0
    assert all(0.0 <= r["test_accuracy"] <= 1.0 for r in rows)
