"""bf16 compute weights with fp32 master weights (``TrainingArguments(bf16_weights=True)``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from training_run import build_model, datasets

from kgmm import ConfigError
from kgmm.training import Trainer, TrainingArguments
from kgmm.training.bf16_weights import Bf16Weights


def small_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Embedding(50, 16),
        nn.LayerNorm(16),
        nn.Linear(16, 32),
        nn.GELU(),
        nn.Linear(32, 4),
    )
    model[0].weight.requires_grad_(False)  # a frozen table, like kgmm's token embeddings
    return model


def loss_and_norm_dtype(call, model: nn.Module, tokens: torch.Tensor) -> tuple[float, set]:
    seen = set()
    hook = model[1].register_forward_hook(lambda m, i, output: seen.add(output.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = call(tokens).float().logsumexp(-1).mean()
    loss.backward()
    hook.remove()
    return float(loss.detach()), seen


def test_gradients_reach_the_fp32_weights_and_match_autocast():
    """Activations stay bf16 past the layer norm (autocast alone gives fp32 there), and the
    fp32 parameters get fp32 gradients within bf16 rounding of autocast's."""
    tokens = torch.randint(0, 50, (8, 12))
    reference = small_model()
    model = small_model()
    expected, reference_dtypes = loss_and_norm_dtype(reference, reference, tokens)
    got, dtypes = loss_and_norm_dtype(Bf16Weights(model), model, tokens)
    assert reference_dtypes == {torch.float32} and dtypes == {torch.bfloat16}
    assert got == pytest.approx(expected, rel=1e-2)
    assert model[0].weight.grad is None
    for (name, p), (_, q) in zip(model.named_parameters(), reference.named_parameters()):
        if p.requires_grad:
            assert p.dtype == p.grad.dtype == torch.float32, name
            torch.testing.assert_close(p.grad, q.grad, atol=2e-3, rtol=5e-2)


def test_frozen_copies_are_reused_until_written_and_trainable_ones_recast():
    model = small_model()
    weights = Bf16Weights(model)
    first, second = weights.parameters(), weights.parameters()
    assert first["0.weight"] is second["0.weight"]  # frozen: cast once
    assert first["2.weight"] is not second["2.weight"]  # trainable: cast in each graph
    assert all(t.dtype == torch.bfloat16 for t in first.values())
    with torch.no_grad():
        model[0].weight.add_(1.0)
    third = weights.parameters()
    assert third["0.weight"] is not first["0.weight"]
    torch.testing.assert_close(third["0.weight"], model[0].weight.to(torch.bfloat16))


def test_trainer_with_bf16_weights_keeps_fp32_weights_and_lowers_the_loss(tmp_path):
    """Training runs on bf16 copies (a layer norm's output is bf16), the model and AdamW's
    moments stay fp32, and the loss falls."""
    train, evaluation = datasets(("intent",))
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        max_steps=40,
        batch_size=4,
        learning_rate=3e-3,
        bf16=True,
        bf16_weights=True,
        device="cpu",
        progress_bar=False,
    )
    model = build_model(dropout=0.0, tasks=("intent",))
    trainer = Trainer(model, train, evaluation, args)
    before = trainer.evaluate()["intent/loss"]
    norm = next(m for m in model.encoders.modules() if isinstance(m, nn.LayerNorm))
    seen = set()

    def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if module.training:
            seen.add(output.dtype)

    norm.register_forward_hook(record)
    trainer.train()  # evaluation at the end runs the fp32 weights under autocast
    assert seen == {torch.bfloat16}
    assert trainer.evaluate()["intent/loss"] < 0.7 * before
    assert {p.dtype for p in trainer.model.parameters()} == {torch.float32}
    moments = [state["exp_avg"] for state in trainer.optimizer.state.values()]
    assert {moment.dtype for moment in moments} == {torch.float32}


def test_bf16_weights_need_bf16_autocast():
    with pytest.raises(ConfigError, match="bf16_weights needs bf16=True"):
        TrainingArguments(bf16_weights=True)
