"""PEFT adapters (LoRA, AdaLoRA, IA3, prefix tuning) on a tiny FusedModel through peft."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import import_benchmark, shared_dataset
from training_run import build_model, make_samples

from kgmm import AdapterConfig, CheckpointError, ConfigError, FusedModel
from kgmm.training import Trainer, TrainingArguments

REPO = Path(__file__).resolve().parents[1]
SAMPLES = make_samples("intent", 24, seed=0)


def tiny_model() -> FusedModel:
    return build_model(dropout=0.0, tasks=("intent",))


def trained(model: FusedModel, tmp_path: Path, steps: int = 4) -> Trainer:
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        max_steps=steps,
        batch_size=8,
        learning_rate=1e-2,
        device="cpu",
        progress_bar=False,
        logging_steps=2,
    )
    trainer = Trainer(model, {"intent": SAMPLES}, args=args)
    trainer.train()
    return trainer


def logits(model: FusedModel) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        batch = model.collator("intent")(SAMPLES[:6])
        return model(task="intent", **batch).logits


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_lora_trains_only_adapter_and_head_and_leaves_base_weights_bit_identical(tmp_path):
    model = tiny_model()
    full = sum(p.numel() for p in model.parameters() if p.requires_grad)
    model.add_adapter(AdapterConfig(method="lora", r=2, alpha=4))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    adapted = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert adapted < full / 3
    assert all("lora_" in n or n.startswith("heads.") for n in trainable)
    assert any(n.startswith("encoders.text.") and "query.lora_A" in n for n in trainable)
    for projection in ("q_proj", "k_proj", "v_proj", "out_proj"):
        assert any(f"self_attn.{projection}.lora_B" in n for n in trainable), projection
        assert any(f"cross_attn.{projection}.lora_B" in n for n in trainable), projection
    before = snapshot(model)
    trained(model, tmp_path)
    after = snapshot(model)
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed and changed <= trainable
    assert any("lora_B" in n for n in changed) and any(n.startswith("heads.") for n in changed)
    for name in set(before) - trainable:
        assert torch.equal(before[name], after[name]), name


def test_adapter_save_load_round_trip_gives_identical_logits_in_a_fresh_model(tmp_path):
    model = tiny_model()
    model.add_adapter(AdapterConfig(method="lora", r=2, alpha=4, dropout=0.0))
    trained(model, tmp_path)
    model.save_adapter(tmp_path / "adapter")
    files = sorted(p.name for p in (tmp_path / "adapter").iterdir())
    assert files == ["adapter_config.json", "adapter_model.safetensors"]
    assert (tmp_path / "adapter" / "adapter_model.safetensors").stat().st_size < 100_000
    fresh = tiny_model()
    assert not torch.allclose(logits(fresh), logits(model))
    fresh.load_adapter(tmp_path / "adapter")
    assert torch.equal(logits(fresh), logits(model))
    with pytest.raises(CheckpointError, match="missing adapter_config.json"):
        tiny_model().load_adapter(tmp_path)


def test_merged_lora_equals_the_adapter_model_and_saves_as_a_plain_checkpoint(tmp_path):
    model = tiny_model()
    model.add_adapter(AdapterConfig(method="lora", r=2, alpha=4, dropout=0.0))
    trained(model, tmp_path)
    unmerged = logits(model)
    model.merge_adapter()
    assert model.adapter is None
    assert not any("lora_" in n for n, _ in model.named_parameters())
    torch.testing.assert_close(logits(model), unmerged, atol=1e-5, rtol=1e-5)
    model.save_pretrained(tmp_path / "merged")
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    torch.testing.assert_close(
        logits(FusedModel.from_pretrained(tmp_path / "merged")), unmerged, atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("method", ["lora", "prefix"])
def test_save_pretrained_with_an_adapter_round_trips(tmp_path, method):
    model = tiny_model()
    model.add_adapter(AdapterConfig(method=method, r=2, num_virtual_tokens=3, dropout=0.0))
    trained(model, tmp_path, steps=2)
    model.save_pretrained(tmp_path / "model")
    loaded = FusedModel.from_pretrained(tmp_path / "model")
    assert loaded.adapter is not None and loaded.adapter.config.method == method
    assert torch.equal(logits(loaded), logits(model))


@pytest.mark.parametrize("method", ["adalora", "ia3", "prefix"])
def test_each_method_trains_through_the_trainer_and_changes_only_its_parameters(tmp_path, method):
    model = tiny_model()
    model.add_adapter(AdapterConfig(method=method, r=2, init_r=4, num_virtual_tokens=3))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    marker = {"adalora": "lora_E", "ia3": "ia3_l", "prefix": "prompt_encoder"}[method]
    assert any(marker in n for n in trainable)
    before = snapshot(model)
    trainer = trained(model, tmp_path, steps=6)
    after = snapshot(model)
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert any(marker in n for n in changed)
    assert changed <= trainable
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records)
    if method == "adalora":
        assert trainer.model.adapter.peft_module.peft_config["default"].total_step == 6


def test_adalora_budget_is_allocated_without_the_user_calling_it(tmp_path):
    model = tiny_model()
    model.add_adapter(
        AdapterConfig(method="adalora", r=2, init_r=4, budget_warmup=0.2, budget_final=0.2)
    )
    trained(model, tmp_path, steps=10)
    ranks = model.adapter.peft_module.peft_config["default"].rank_pattern
    assert ranks, "update_and_allocate never ran"
    kept = sum(int(torch.as_tensor(mask).sum()) for mask in ranks.values())
    assert kept == 2 * len(ranks) < 4 * len(ranks)  # budget: target_r per matrix on average


def test_bad_adapter_settings_are_config_errors():
    with pytest.raises(ConfigError, match="adapter method must be one of"):
        AdapterConfig(method="loraa")
    with pytest.raises(ConfigError, match="prefix tuning adapts the text encoder only"):
        AdapterConfig(method="prefix", targets=("text", "fusion"))
    with pytest.raises(ConfigError, match="targets must be a non-empty subset"):
        AdapterConfig(targets=("vision",))
    model = tiny_model()
    with pytest.raises(ConfigError, match="no adapter"):
        model.merge_adapter()
    model.add_adapter(AdapterConfig(method="prefix", num_virtual_tokens=2))
    with pytest.raises(ConfigError, match="cannot merge"):
        model.merge_adapter()
    with pytest.raises(ConfigError, match="already has an adapter"):
        model.add_adapter(AdapterConfig())


@pytest.mark.data
def test_quick_benchmark_compares_lora_with_full_fine_tuning(tmp_path):
    data = shared_dataset("banking77")
    module = import_benchmark("peft_methods")
    out = tmp_path / "peft.json"
    module.main(["--quick", "--data-dir", str(data), "--out", str(out), "--methods", "full,lora"])
    rows = json.loads(out.read_text())["rows"]
    assert [r["method"] for r in rows] == ["full", "lora"]
    assert rows[1]["trainable_parameters"] < rows[0]["trainable_parameters"] / 10
    assert all(0.0 <= r["test_accuracy"] <= 1.0 and r["peak_rss_mib"] > 0 for r in rows)
