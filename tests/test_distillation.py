"""Knowledge distillation: the KL term, a frozen teacher, the pull towards the teacher, and
the checks that teacher and student read the same batches."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from conftest import import_benchmark, shared_dataset
from training_run import build_model, datasets, head_specs, knowledge_graph, make_samples, tiny_text

from kgmm import ConfigError, FusedConfig, FusedModel, KnowledgeGraph
from kgmm.fusion import FusionConfig
from kgmm.training import Distillation, Trainer, TrainingArguments
from kgmm.training.distillation import distillation_loss


def arguments(tmp_path, **fields) -> TrainingArguments:
    defaults = {
        "output_dir": str(tmp_path / "run"),
        "batch_size": 8,
        "learning_rate": 3e-3,
        "logging_steps": 5,
        "device": "cpu",
        "progress_bar": False,
    }
    return TrainingArguments(**{**defaults, **fields})


def started(trainer: Trainer, callback: Distillation) -> Distillation:
    callback.on_train_begin(trainer)
    return callback


def distillation_term(student, teacher, task, tmp_path, **options) -> torch.Tensor:
    samples = make_samples(task, 8, seed=3)
    trainer = Trainer(student, {task: samples}, args=arguments(tmp_path))
    callback = started(trainer, Distillation(teacher, **options))
    batch = student.collator(task)(samples)
    student.eval()
    output = student(task=task, **batch)
    return callback.extra_loss(trainer, task, batch, output)


@pytest.mark.parametrize("task", ["intent", "qa", "mt"])
def test_term_is_zero_for_a_copy_and_positive_for_another_teacher(task, tmp_path):
    student = build_model(dropout=0.0, tasks=(task,))
    same = distillation_term(student, copy.deepcopy(student), task, tmp_path, hidden_weight=1.0)
    assert abs(float(same.detach())) < 1e-6
    other = build_model(dropout=0.0, tasks=(task,))
    torch.manual_seed(1)
    for parameter in other.parameters():
        parameter.data.add_(0.5 * torch.randn_like(parameter))
    assert float(distillation_term(student, other, task, tmp_path).detach()) > 1e-3


def test_teacher_stays_frozen_while_the_student_learns(tmp_path):
    train, _ = datasets(("intent", "qa"))
    teacher = build_model(tasks=("intent", "qa"))
    before = copy.deepcopy(teacher.state_dict())
    student = build_model(tasks=("intent", "qa"))
    student_before = copy.deepcopy(student.state_dict())
    callback = Distillation(teacher, temperature=2.0, weight=1.0, hidden_weight=0.5)
    Trainer(student, train, args=arguments(tmp_path, max_steps=6), callbacks=[callback]).train()
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert not teacher.training
    changed = [k for k, v in student.state_dict().items() if not torch.equal(student_before[k], v)]
    assert any(k.startswith("heads.qa") for k in changed)
    assert any(k.startswith("encoders.text") for k in changed)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert all(r["loss/distillation"] > 0 for r in records if r["split"] == "train")


def mean_divergence(student, teacher, samples) -> float:
    batch = student.collator("intent")(samples)
    student.eval()
    with torch.no_grad():
        logits = student(task="intent", **batch).logits
        target = teacher(task="intent", **batch).logits
    return float(distillation_loss({"type": "classification"}, logits, target, 1.0, batch))


def test_distillation_pulls_the_student_towards_the_teacher(tmp_path):
    train, _ = datasets(("intent",), train_size=48)
    teacher = build_model(dropout=0.0, tasks=("intent",))
    Trainer(teacher, train, args=arguments(tmp_path / "teacher", max_steps=40)).train()
    teacher.eval()
    few = {"intent": train["intent"][:6]}  # the student sees 6 labelled samples
    held_out = make_samples("intent", 24, seed=50)
    divergence = {}
    for weight in (0.0, 3.0):
        student = build_model(dropout=0.0, tasks=("intent",))
        callbacks = [Distillation(teacher, temperature=2.0, weight=weight)] if weight else []
        run = arguments(tmp_path / f"student-{weight}", max_steps=40)
        Trainer(student, few, args=run, callbacks=callbacks).train()
        divergence[weight] = mean_divergence(student, teacher, held_out)
    assert divergence[3.0] < 0.6 * divergence[0.0]


def test_padded_options_and_binary_scores_give_finite_terms():
    student = torch.tensor([[1.0, 2.0, float("-inf")]], requires_grad=True)
    teacher = torch.tensor([[2.0, 1.0, float("-inf")]])
    term = distillation_loss({"type": "multiple_choice"}, student, teacher, 2.0, {})
    term.backward()
    assert torch.isfinite(term) and float(term.detach()) > 0
    assert torch.isfinite(student.grad).all() and float(student.grad[0, 2]) == 0.0
    scores = torch.tensor([0.3, -1.0])
    same = distillation_loss({"type": "recommendation"}, scores, scores.clone(), 2.0, {})
    assert abs(float(same)) < 1e-7
    pairs = torch.tensor([[1.0, 0.0]])
    flipped = distillation_loss({"type": "recommendation"}, pairs, pairs.flip(1), 1.0, {})
    assert float(flipped) > 0.1


def test_mismatched_labels_are_a_config_error(tmp_path):
    teacher = build_model(tasks=("intent",))
    teacher.heads["intent"].labels = ["billing", "shipping", "returns"]
    student = build_model(tasks=("intent",))
    trainer = Trainer(student, {"intent": make_samples("intent", 8, 0)}, args=arguments(tmp_path))
    with pytest.raises(ConfigError, match="differ in 'labels'"):
        started(trainer, Distillation(teacher))
    with pytest.raises(ConfigError, match="teacher has no head for task 'intent'"):
        started(trainer, Distillation(build_model(tasks=("qa",))))


def test_other_graph_or_width_is_a_config_error(tmp_path):
    student = build_model(tasks=("intent",))
    trainer = Trainer(student, {"intent": make_samples("intent", 8, 0)}, args=arguments(tmp_path))
    wide = FusedModel(
        FusedConfig(
            text=tiny_text(0.0),
            fusion=FusionConfig(d_model=64, num_heads=2),
            heads={"intent": head_specs(0.0)["intent"]},
            entity_embeddings={"source": "random", "dim": 16},
        ),
        kg=knowledge_graph(),
    )
    started(trainer, Distillation(wide))  # logits alone: other widths are fine
    with pytest.raises(ConfigError, match="teacher's d_model is 64 and the student's 32"):
        started(trainer, Distillation(wide, hidden_weight=1.0))
    smaller = copy.deepcopy(student)
    smaller.kg = KnowledgeGraph.from_triples([("flu", "has_symptom", "fever")])
    with pytest.raises(ConfigError, match="knowledge graphs differ"):
        started(trainer, Distillation(smaller))
    with pytest.raises(ConfigError, match="temperature must be > 0"):
        Distillation(student, temperature=0.0)


@pytest.mark.data
def test_quick_benchmark_compares_teacher_and_students(tmp_path):
    data = shared_dataset("banking77")
    out = tmp_path / "distillation.json"
    import_benchmark("distillation").main(
        ["--quick", "--epochs", "1", "--data-dir", str(data), "--out", str(out)]
    )
    rows = json.loads(out.read_text())["rows"]
    assert [(r["model"], r["text_layers"]) for r in rows] == [
        ("teacher", 6),
        ("student", 3),
        ("student + distillation", 3),
    ]
    assert rows[1]["parameters"] == rows[2]["parameters"] < rows[0]["parameters"]
    assert all(
        0.0 <= r["test_accuracy"] <= 1.0 and r["inference_samples_per_second"] > 0 for r in rows
    )
