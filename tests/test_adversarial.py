"""Adversarial training (FGM, PGD), the embedding-space attack and character noise."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import import_benchmark, shared_dataset
from training_run import build_model, datasets

from kgmm import ConfigError
from kgmm.data import character_noise, noisy_samples
from kgmm.training import (
    AdversarialTraining,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    embedding_attack_accuracy,
)
from kgmm.training.adversarial import word_embeddings


def arguments(tmp_path, **fields) -> TrainingArguments:
    defaults = {
        "output_dir": str(tmp_path / "run"),
        "batch_size": 8,
        "learning_rate": 3e-3,
        "device": "cpu",
        "progress_bar": False,
        "max_steps": 2,
    }
    return TrainingArguments(**{**defaults, **fields})


class Probe(TrainerCallback):
    """Records the norm of the word-embedding change at every forward and checks, after the
    adversarial callback's ``on_backward``, that the weights are back bit for bit."""

    def __init__(self, model) -> None:
        self.embedding = word_embeddings(model)
        self.model = model
        self.shifts: list[float] = []
        self.table_shifts: list[float] = []
        self.restored: list[bool] = []
        self.gradients: list[torch.Tensor] = []
        self.embedding.register_forward_pre_hook(self._record)

    def _record(self, module, inputs) -> None:
        if self.model.training:
            weights, table = module.weight.detach(), self.model.entity_table.detach()
            self.shifts.append(float(torch.linalg.vector_norm(weights - self.weights)))
            self.table_shifts.append(float(torch.linalg.vector_norm(table - self.table)))

    def on_step_begin(self, trainer, step) -> None:
        self.weights = self.embedding.weight.detach().clone()
        self.table = trainer.model.entity_table.detach().clone()

    def on_backward(self, trainer, task, batch, loss) -> None:
        same_weights = torch.equal(self.embedding.weight, self.weights)
        self.restored.append(same_weights and torch.equal(trainer.model.entity_table, self.table))

    def on_step_end(self, trainer, step, logs) -> None:
        head = next(iter(trainer.model.heads.values()))
        self.gradients.append(torch.cat([p.grad.flatten() for p in head.parameters()]))


def train_with(tmp_path, task: str, *callbacks_of, **fields):
    train, _ = datasets((task,))
    model = build_model(dropout=0.0, tasks=(task,))
    probe = Probe(model)
    callbacks = [make() for make in callbacks_of] + [probe]
    Trainer(model, train, args=arguments(tmp_path, **fields), callbacks=callbacks).train()
    return model, probe


@pytest.mark.parametrize("task", ["intent", "qa"])
def test_fgm_shifts_embeddings_by_epsilon_then_restores_them_exactly(tmp_path, task):
    fgm = lambda: AdversarialTraining("fgm", epsilon=0.5)  # noqa: E731
    _, probe = train_with(tmp_path, task, fgm)
    assert len(probe.shifts) == 2 * 2  # clean + adversarial forward, 2 steps
    assert probe.shifts[0::2] == [0.0, 0.0]
    assert probe.shifts[1::2] == pytest.approx([0.5, 0.5], rel=1e-4)
    assert probe.restored == [True, True]
    assert probe.table_shifts == [0.0] * 4  # entities are not a target by default


def test_pgd_takes_projected_steps_and_restores_embeddings_and_entities(tmp_path):
    pgd = lambda: AdversarialTraining(  # noqa: E731
        "pgd", epsilon=0.5, alpha=0.3, steps=3, targets=("text", "entities")
    )
    model, probe = train_with(tmp_path, "qa", pgd, gradient_accumulation_steps=2)
    per_micro_batch = [probe.shifts[i : i + 4] for i in range(0, len(probe.shifts), 4)]
    assert len(per_micro_batch) == 4  # 2 steps x 2 micro-batches, 1 clean + 3 PGD forwards
    for clean, first, *rest in per_micro_batch:
        assert clean == 0.0
        assert first == pytest.approx(0.3, rel=1e-4)
        assert all(0.3 < shift <= 0.5 + 1e-5 for shift in rest)
    assert probe.restored == [True] * 4
    assert 0 < max(probe.table_shifts) <= 0.5 + 1e-5  # QA texts name symptoms: entities linked
    assert not model.entity_table.requires_grad and model.entity_table.grad is None


def test_adversarial_loss_adds_to_the_gradients(tmp_path):
    _, plain = train_with(tmp_path / "plain", "intent")
    _, fgm = train_with(tmp_path / "fgm", "intent", lambda: AdversarialTraining("fgm"))
    _, fgm_again = train_with(tmp_path / "again", "intent", lambda: AdversarialTraining("fgm"))
    assert not torch.allclose(plain.gradients[0], fgm.gradients[0])
    assert torch.equal(fgm.gradients[1], fgm_again.gradients[1])  # deterministic


def test_frozen_word_embeddings_and_bad_options_are_config_errors(tmp_path):
    train, _ = datasets(("intent",))
    model = build_model(dropout=0.0, tasks=("intent",))
    word_embeddings(model).weight.requires_grad_(False)
    trainer = Trainer(model, train, args=arguments(tmp_path), callbacks=[AdversarialTraining()])
    with pytest.raises(ConfigError, match="word embeddings .* frozen"):
        trainer.train()
    with pytest.raises(ConfigError, match="method must be one of"):
        AdversarialTraining("fgsm")
    with pytest.raises(ConfigError, match="targets must be among"):
        AdversarialTraining(targets=("image",))


def test_attack_lowers_accuracy_of_a_trained_model(tmp_path):
    train, evaluation = datasets(("intent",), train_size=48, eval_size=24)
    model = build_model(dropout=0.0, tasks=("intent",))
    args = arguments(tmp_path, max_steps=40)
    Trainer(model, train, args=args).train()
    clean = embedding_attack_accuracy(model, evaluation["intent"], "intent", epsilon=0.0)
    assert clean["accuracy"] == clean["attacked_accuracy"] >= 0.9
    fgsm = embedding_attack_accuracy(model, evaluation["intent"], "intent", epsilon=2.0)
    pgd = embedding_attack_accuracy(model, evaluation["intent"], "intent", epsilon=2.0, steps=3)
    assert fgsm["accuracy"] == clean["accuracy"]
    assert fgsm["attacked_accuracy"] < clean["accuracy"]
    assert pgd["attacked_accuracy"] < clean["accuracy"]
    # each example is attacked on its own: batches of one give the same accuracies
    one = embedding_attack_accuracy(model, evaluation["intent"], "intent", 2.0, batch_size=1)
    assert one == fgsm
    model.train()
    embedding_attack_accuracy(model, evaluation["intent"], "intent", epsilon=1.0)
    assert model.training


def osa_distance(a: str, b: str) -> int:
    """Optimal string alignment distance (edits: insert, delete, substitute, transpose)."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(
                d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1])
            )
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[-1][-1]


TEXTS = [
    "I still have not received my new card, which I ordered over a week ago.",
    "Why was my card payment declined at the supermarket this morning?",
    "Können Sie mir sagen, wo meine Überweisung geblieben ist?",
]


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("rate", [0.05, 0.1, 0.2])
def test_noise_edits_the_requested_share_of_letters(text, rate):
    letters = sum(c.isalpha() for c in text)
    noisy = character_noise(text, rate, seed=3)
    assert osa_distance(text, noisy) == round(rate * letters)
    assert noisy == character_noise(text, rate, seed=3)
    assert noisy != character_noise(text, rate, seed=4)


def test_noise_covers_typos_and_casing_and_keeps_labels():
    samples = [{"text": text, "label": str(i)} for i, text in enumerate(TEXTS * 20)]
    original = [dict(s) for s in samples]
    noisy = noisy_samples(samples, 0.1, seed=0)
    assert samples == original
    assert [s["label"] for s in noisy] == [s["label"] for s in samples]
    assert noisy == noisy_samples(samples, 0.1, seed=0)
    single_edits = {character_noise("payment", 1 / 7, seed) for seed in range(100)}
    assert {len(t) for t in single_edits} == {6, 7, 8}  # deletion, insertion, others
    assert any(t.lower() == "payment" != t for t in single_edits)  # a casing change
    assert any(t != "payment" and sorted(t) == sorted("payment") for t in single_edits)
    assert character_noise("", 0.5) == "" and character_noise("abc", 0.0) == "abc"
    with pytest.raises(ConfigError, match="noise rate"):
        character_noise("abc", 1.5)


@pytest.mark.data
def test_quick_benchmark_measures_clean_noisy_and_attacked_accuracy(tmp_path):
    data = shared_dataset("banking77")
    out = tmp_path / "adversarial.json"
    import_benchmark("adversarial").main(
        ["--quick", "--methods", "plain,fgm", "--data-dir", str(data), "--out", str(out)]
    )
    rows = json.loads(out.read_text())["rows"]
    assert [r["method"] for r in rows] == ["plain", "fgm"]
    for row in rows:
        assert row["clean_accuracy"] > 0.5  # 5 intents: chance is 0.2
        assert 0.0 <= row["fgsm_accuracy"] <= row["clean_accuracy"]
        assert 0.0 <= row["noisy_accuracy"] <= 1.0 and row["train_samples_per_second"] > 0
