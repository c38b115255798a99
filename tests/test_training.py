"""Trainer: joint training, task sampling, schedules, accumulation, clipping, exact resume
after a real kill, early stopping, metrics log, and ``kgmm train``/``kgmm evaluate``."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import training_run
import yaml
from safetensors.torch import load_file
from training_run import build_model, datasets, make_samples

from kgmm import ConfigError, FusedConfig, FusedModel
from kgmm.cli.main import main
from kgmm.fusion import FusionConfig
from kgmm.training import (
    LaneDropout,
    LearningRateSchedule,
    TaskSampler,
    TimeBudget,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    evaluate_task,
    latest_checkpoint,
    native_bf16,
)
from kgmm.training.batch_sampler import EpochBatchSampler

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "training_run.py"


def arguments(tmp_path: Path, **fields) -> TrainingArguments:
    defaults = {
        "output_dir": str(tmp_path / "run"),
        "batch_size": 4,
        "learning_rate": 3e-3,
        "logging_steps": 2,
        "device": "cpu",
        "progress_bar": False,
    }
    return TrainingArguments(**{**defaults, **fields})


def parameters(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


# ---------------------------------------------------------------------------- joint training
def test_three_tasks_trained_jointly_each_eval_loss_falls(tmp_path):
    tasks = ("intent", "qa", "mt")
    train, evaluation = datasets(tasks)
    trainer = Trainer(
        build_model(dropout=0.0),
        train,
        evaluation,
        arguments(tmp_path, max_steps=90, warmup_ratio=0.1, logging_steps=10),
    )
    before = trainer.evaluate()
    result = trainer.train()
    after = trainer.evaluate()
    assert result.step == 90
    for task in tasks:
        assert after[f"{task}/loss"] < 0.7 * before[f"{task}/loss"], task
    assert after["intent/accuracy"] > before["intent/accuracy"]
    assert {"intent/macro_f1", "qa/accuracy", "qa/macro_f1", "mt/bleu"} <= set(after)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    train_records = [r for r in records if r["split"] == "train"]
    assert [r["step"] for r in train_records] == list(range(10, 91, 10))
    assert records[-1]["split"] == "eval" and records[-1]["step"] == 90
    for record in train_records:
        assert {"epoch", "lr", "loss", "seconds", "grad_norm", "fusion_gates"} <= set(record)
        assert all(f"loss/{task}" in record for task in tasks)  # 10 draws see every task


@pytest.mark.parametrize(
    ("strategy", "temperature", "expected"),
    [
        ("proportional", 1.0, {"a": 0.25, "b": 0.75}),
        ("temperature", 2.0, {"a": 10 / (10 + 300**0.5), "b": 300**0.5 / (10 + 300**0.5)}),
        ("temperature", 1e6, {"a": 0.5, "b": 0.5}),
    ],
)
def test_task_sampler_draws_the_expected_shares(strategy, temperature, expected):
    sampler = TaskSampler({"a": 100, "b": 300}, strategy, temperature, seed=1)
    assert sampler.probabilities == pytest.approx(expected)
    draws = [next(sampler) for _ in range(20_000)]
    for task, share in expected.items():
        assert draws.count(task) / len(draws) == pytest.approx(share, abs=0.01)


def test_task_sampler_round_robin_and_resumable_state():
    robin = TaskSampler({"a": 1, "b": 50, "c": 3}, "round_robin")
    assert [next(robin) for _ in range(7)] == ["a", "b", "c", "a", "b", "c", "a"]
    sampler = TaskSampler({"a": 3, "b": 5}, seed=7)
    [next(sampler) for _ in range(11)]
    state = sampler.state_dict()
    expected = [next(sampler) for _ in range(50)]
    again = TaskSampler({"a": 3, "b": 5}, seed=7)
    again.load_state_dict(state)
    assert [next(again) for _ in range(50)] == expected


def test_round_robin_shares_give_exact_step_counts_spread_evenly():
    robin = TaskSampler({"qa": 9, "mt": 9, "rec": 9}, "round_robin", shares={"mt": 5})
    draws = [next(robin) for _ in range(14)]
    assert draws[:7] == ["mt", "mt", "qa", "mt", "rec", "mt", "mt"]
    assert draws[7:] == draws[:7]  # whole cycles: exact counts per task
    assert {t: draws.count(t) for t in ("qa", "mt", "rec")} == {"qa": 2, "mt": 10, "rec": 2}
    with pytest.raises(ConfigError, match="round-robin shares name tasks \\['de'\\]"):
        TaskSampler({"qa": 1}, "round_robin", shares={"de": 2})
    with pytest.raises(ConfigError, match="round_robin_shares needs task_sampling='round_robin'"):
        TrainingArguments(max_steps=1, round_robin_shares={"mt": 2})
    with pytest.raises(ConfigError, match="round_robin_shares must be integers >= 1"):
        TrainingArguments(max_steps=1, task_sampling="round_robin", round_robin_shares={"mt": 0})


def test_trainer_follows_round_robin_shares(tmp_path):
    class DrawnTasks(TrainerCallback):
        def __init__(self) -> None:
            self.tasks: list[str] = []

        def on_backward(self, trainer, task, batch, loss) -> None:
            self.tasks.append(task)

    train, _ = datasets(("intent", "qa"))
    drawn = DrawnTasks()
    args = arguments(
        tmp_path, max_steps=6, task_sampling="round_robin", round_robin_shares={"qa": 2}
    )
    Trainer(build_model(tasks=("intent", "qa")), train, args=args, callbacks=[drawn]).train()
    assert drawn.tasks == ["qa", "intent", "qa"] * 2


def test_task_weight_zero_leaves_that_head_untouched(tmp_path):
    train, _ = datasets(("intent", "qa"))
    model = build_model(dropout=0.0, tasks=("intent", "qa"))
    start = parameters(model)
    args = arguments(tmp_path, max_steps=6, weight_decay=0.0, task_weights={"qa": 0.0})
    Trainer(model, train, args=args).train()
    end = parameters(model)
    qa = [n for n in start if n.startswith("heads.qa.")]
    intent = [n for n in start if n.startswith("heads.intent.")]
    assert qa and all(torch.equal(start[n], end[n]) for n in qa)
    assert any(not torch.equal(start[n], end[n]) for n in intent)


def test_evaluate_reports_the_metrics_of_each_head_type():
    model = FusedModel(
        FusedConfig(
            text=training_run.tiny_text(0.0),
            fusion=FusionConfig(d_model=32, num_heads=2),
            heads={
                "clicks": {"type": "recommendation", "num_users": 4, "num_items": 6},
                "pairs": {"type": "recommendation", "num_users": 4, "num_items": 6, "loss": "bpr"},
                "exam": {"type": "multiple_choice"},
                "tags": {"type": "classification", "labels": ["a", "b"], "multi_label": True},
            },
        )
    )
    rows = [{"text": f"item {i}", "user": i % 4, "item": i % 6} for i in range(8)]
    data = {
        "clicks": [{**row, "label": i % 2} for i, row in enumerate(rows)],
        "pairs": [{**row, "neg_item": (row["item"] + 1) % 6} for row in rows],
        "exam": [{"text": "which?", "options": ["x", "y", "z"], "answer": i % 3} for i in range(6)],
        "tags": [{"text": "t", "label": ["a", "b"][: 1 + i % 2]} for i in range(6)],
    }
    expected = {
        "clicks": {"loss", "auc", "f1"},
        "pairs": {"loss", "auc", "accuracy"},
        "exam": {"loss", "accuracy", "macro_f1"},
        "tags": {"loss", "accuracy", "micro_f1", "macro_f1"},
    }
    for task, samples in data.items():
        metrics = evaluate_task(model, task, samples, batch_size=4)
        assert set(metrics) == {f"{task}/{name}" for name in expected[task]}
        assert all(0.0 <= value <= 1.0 for name, value in metrics.items() if "loss" not in name)


# ---------------------------------------------------------------------------- optimisation
def test_learning_rate_schedules_at_given_steps():
    linear = LearningRateSchedule("linear", warmup_steps=10, total_steps=110)
    assert [linear(s) for s in (0, 5, 10, 60, 110, 200)] == [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]
    cosine = LearningRateSchedule("cosine", warmup_steps=10, total_steps=110)
    assert cosine(60) == pytest.approx(0.5)
    assert cosine(35) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert cosine(110) == pytest.approx(0.0, abs=1e-12)
    constant = LearningRateSchedule("constant", warmup_steps=4, total_steps=10)
    assert [constant(s) for s in (2, 4, 9)] == [0.5, 1.0, 1.0]


def test_trainer_logs_the_scheduled_learning_rate(tmp_path):
    train, _ = datasets(("intent",))
    args = arguments(tmp_path, max_steps=8, warmup_steps=4, logging_steps=1, learning_rate=1e-3)
    Trainer(build_model(tasks=("intent",)), train, args=args).train()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    lrs = [r["lr"] for r in records]  # the rate each step used
    assert lrs == pytest.approx([0.0, 2.5e-4, 5e-4, 7.5e-4, 1e-3, 7.5e-4, 5e-4, 2.5e-4])


class Gradients(TrainerCallback):
    """Keeps each step's accumulated gradients (taken before the next step zeroes them)."""

    def __init__(self) -> None:
        self.steps: list[dict[str, torch.Tensor]] = []

    def on_step_end(self, trainer, step, logs):
        named = trainer.model.named_parameters()
        self.steps.append({n: p.grad.clone() for n, p in named if p.grad is not None})


def test_gradient_accumulation_of_two_equals_one_double_batch(tmp_path):
    """Compared on gradients: Adam turns the float noise of zero-in-theory gradients (key
    biases) into full-size steps, so parameters are not a fair comparison."""
    train, _ = datasets(("intent",))
    probes = []
    for batch_size, accumulation in ((4, 2), (8, 1)):
        probe = Gradients()
        args = arguments(
            tmp_path / str(batch_size),
            max_steps=1,
            batch_size=batch_size,
            gradient_accumulation_steps=accumulation,
            max_grad_norm=None,
        )
        model = build_model(dropout=0.0, tasks=("intent",))
        Trainer(model, train, args=args, callbacks=[probe]).train()
        probes.append(probe.steps[0])
    assert probes[0].keys() == probes[1].keys()
    for name, grad in probes[0].items():
        torch.testing.assert_close(grad, probes[1][name], atol=1e-6, rtol=1e-4, msg=name)


class GradientNorm(TrainerCallback):
    def __init__(self) -> None:
        self.norms: list[float] = []
        self.logged: list[float] = []

    def on_step_end(self, trainer, step, logs):
        grads = [p.grad for p in trainer.model.parameters() if p.grad is not None]
        self.norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))
        self.logged.append(float(logs["grad_norm"]))


def test_gradients_are_clipped_to_max_grad_norm(tmp_path):
    train, _ = datasets(("intent", "qa"))
    probe = GradientNorm()
    args = arguments(tmp_path, max_steps=4, max_grad_norm=0.01)
    Trainer(build_model(tasks=("intent", "qa")), train, args=args, callbacks=[probe]).train()
    assert min(probe.logged) > 0.01  # the norms before clipping
    assert max(probe.norms) == pytest.approx(0.01, rel=1e-3)


class HookProbe(TrainerCallback):
    """Adds a constant to the loss, marks the samples its collator sees, logs a field and
    turns the Trainer's clipping off at the start."""

    def __init__(self) -> None:
        self.seen_texts: list[str] = []
        self.losses: list[float] = []

    def wrap_collator(self, trainer, task, collator):
        def marked(samples):
            self.seen_texts += [s["text"] for s in samples]
            return collator(samples)

        return marked

    def on_train_begin(self, trainer):
        trainer.max_grad_norm = None

    def extra_loss(self, trainer, task, batch, output):
        return output.loss.new_tensor(10.0)

    def on_backward(self, trainer, task, batch, loss):
        self.losses.append(float(loss))

    def on_log(self, trainer, record):
        record["probe"] = len(self.seen_texts)


def test_callback_hooks_wrap_collator_add_loss_terms_and_log_fields(tmp_path):
    train, _ = datasets(("intent",))
    probe = HookProbe()
    args = arguments(tmp_path, max_steps=3, logging_steps=1, max_grad_norm=1e-6)
    trainer = Trainer(build_model(tasks=("intent",)), train, args=args, callbacks=[probe])
    trainer.train()
    assert len(probe.seen_texts) == 12 and set(probe.seen_texts) <= {
        s["text"] for s in train["intent"]
    }
    assert min(probe.losses) > 10.0  # head loss + the constant term
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert [r["probe"] for r in records] == [4, 8, 12]
    assert trainer.max_grad_norm is None and all("grad_norm" not in r for r in records)


def test_length_grouping_and_rank_slices_cover_every_sample_once():
    lengths = [(7 * i) % 23 for i in range(100)]
    grouped = EpochBatchSampler(100, 4, seed=3, lengths=lengths, drop_last=True)
    batches = grouped.epoch_batches(0)
    assert sorted(i for b in batches for i in b) == list(range(100))
    plain = EpochBatchSampler(100, 4, seed=3, drop_last=True).epoch_batches(0)

    def padded(bs):
        return sum(len(b) * max(lengths[i] for i in b) for b in bs)

    assert padded(batches) < 0.8 * padded(plain)
    ranks = [EpochBatchSampler(101, 2, seed=3, rank=r, world_size=2) for r in (0, 1)]
    assert len(ranks[0]) == 25  # the incomplete last global batch is dropped
    ranks[0].set_position(epoch=1, start=3)
    ranks[1].set_position(epoch=1, start=3)
    joined = [a + b for a, b in zip(*ranks)]
    single = EpochBatchSampler(101, 4, seed=3, drop_last=True)
    assert joined == single.epoch_batches(1)[3:]


def test_data_loader_workers_do_not_change_training(tmp_path):
    """Batches are fixed by (seed, epoch, position) in the main process, so workers running
    the collator change nothing: resumed runs stay exact with workers too."""
    train, _ = datasets(("intent", "qa"))
    finals = []
    for workers in (0, 2):
        model = build_model(tasks=("intent", "qa"))
        args = arguments(tmp_path / str(workers), max_steps=5, num_workers=workers)
        Trainer(model, train, args=args).train()
        finals.append(parameters(model))
    assert all(torch.equal(finals[0][name], finals[1][name]) for name in finals[0])


@pytest.mark.parametrize("lane_dropout", [False, True])
def test_compiled_encoders_train_like_eager_ones_and_save_the_same_keys(tmp_path, lane_dropout):
    """``compile=True`` changes speed, not training: with dropout on (compiled encoders draw
    their masks from torch's generator too, LaneDropout's as well) the weights after three
    steps match an eager run's to well under one Adam step (3e-3; fused kernels round
    differently), and the saved state dict has the eager names."""
    train, _ = datasets(("intent",))
    finals = []
    for compile_ in (False, True):
        model = build_model(dropout=0.1, tasks=("intent",))
        args = arguments(
            tmp_path / str(compile_), max_steps=3, compile=compile_, lane_dropout=lane_dropout
        )
        Trainer(model, train, args=args).train()
        finals.append(parameters(model))
    assert model.encoders_compiled
    assert finals[0].keys() == finals[1].keys()
    for name in finals[0]:
        torch.testing.assert_close(finals[1][name], finals[0][name], atol=2e-4, rtol=1e-3)
    model.save_pretrained(tmp_path / "saved")
    reloaded = FusedModel.from_pretrained(tmp_path / "saved")
    assert reloaded.state_dict().keys() == model.state_dict().keys()
    assert model.predict(train["intent"][:4], "intent") == reloaded.predict(
        train["intent"][:4], "intent"
    )


def test_lane_dropout_swaps_every_dropout_of_the_model_and_it_still_learns(tmp_path):
    train, evaluation = datasets(("intent",))
    model = build_model(dropout=0.1, tasks=("intent",))
    plain = [name for name, m in model.named_modules() if type(m) is torch.nn.Dropout]
    trainer = Trainer(
        model, train, evaluation, arguments(tmp_path, max_steps=40, lane_dropout=True)
    )
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    swapped = [name for name, m in model.named_modules() if isinstance(m, LaneDropout)]
    assert plain and swapped == plain
    assert after["intent/loss"] < 0.7 * before["intent/loss"]


@pytest.mark.parametrize("native", [True, False])
def test_bf16_auto_follows_the_hardware_and_forced_bf16_warns_without_it(
    tmp_path, monkeypatch, native
):
    """``bf16="auto"`` trains under bf16 autocast only where matmuls have bf16 hardware;
    ``bf16=True`` elsewhere still does, with a warning that names the slow path."""
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    assert native_bf16(torch.device("cpu")) is native
    train, _ = datasets(("intent",))
    model = build_model(tasks=("intent",))
    dtypes = set()
    model.heads["intent"].register_forward_hook(
        lambda module, inputs, output: dtypes.add(output.logits.dtype)
    )
    Trainer(model, train, args=arguments(tmp_path, bf16="auto", max_steps=2)).train()
    assert dtypes == {torch.bfloat16 if native else torch.float32}
    if native:
        assert Trainer(model, train, args=arguments(tmp_path, bf16=True)).bf16 is True
    else:
        with pytest.warns(UserWarning, match=r"no bf16 matmul hardware.*bf16='auto' runs in fp32"):
            assert Trainer(model, train, args=arguments(tmp_path, bf16=True)).bf16 is True


def test_bf16_must_be_true_false_or_auto():
    with pytest.raises(ConfigError, match="bf16 must be true, false or 'auto', got 'yes'"):
        TrainingArguments(bf16="yes")
    assert TrainingArguments.from_dict(TrainingArguments(bf16="auto").to_dict()).bf16 == "auto"


# ---------------------------------------------------------------------------- checkpoints
def _run(output_dir: Path, *flags: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(output_dir), "--max-steps", "12", *flags],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(process.stdout.read().decode())
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def test_resume_after_sigkill_mid_save_gives_identical_parameters(tmp_path):
    """Dropout is on, so the RNG states must be restored too, not only weights and data."""
    killed = tmp_path / "killed"
    victim = _run(killed, "--hang-in-save", "8")  # stops while writing checkpoint-8
    uninterrupted = training_run.train_once(tmp_path / "whole", max_steps=12, save_steps=4)
    _wait_for(killed / ".staging-checkpoint-8" / "model.safetensors", victim)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (killed / "checkpoint-8").exists()
    assert latest_checkpoint(killed) == killed / "checkpoint-4"
    resumed = _run(killed, "--resume")
    output = resumed.communicate(timeout=120)[0].decode()
    assert resumed.returncode == 0, output
    expected = {name: p.detach() for name, p in uninterrupted.model.named_parameters()}
    actual = load_file(str(killed / "final.safetensors"))
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[name], actual[name]) for name in expected)
    assert not any(p.name.startswith(".staging") for p in killed.iterdir())
    steps = [json.loads(line)["step"] for line in (killed / "metrics.jsonl").open()]
    assert steps == [2, 4, 6, 8, 10, 12]  # lines of the killed run after step 4 were dropped
    state = torch.load(killed / "checkpoint-12" / "training_state.pt", weights_only=True)
    assert state["step"] == 12 and set(state["streams"]) == {"intent", "qa", "mt"}


def test_early_stopping_keeps_the_best_model(tmp_path):
    """Evaluating on flipped labels: eval loss soon rises while training loss falls."""
    train, _ = datasets(("intent",))
    flip = {"billing": "shipping", "shipping": "refund", "refund": "billing"}
    flipped = [{**s, "label": flip[s["label"]]} for s in make_samples("intent", 12, seed=5)]
    args = arguments(
        tmp_path,
        max_steps=100,
        eval_steps=2,
        save_steps=2,
        metric_for_best_model="intent/loss",
        early_stopping_patience=2,
    )
    model = build_model(dropout=0.0, tasks=("intent",))
    result = Trainer(model, train, {"intent": flipped}, args).train()
    run = tmp_path / "run"
    records = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    evals = {r["step"]: r["intent/loss"] for r in records if r["split"] == "eval"}
    best_step = min(evals, key=evals.get)
    assert result.stopped_early and result.step == best_step + 4 < 100
    assert list(evals) == list(range(2, result.step + 1, 2))
    assert result.best_step == best_step and result.best_metric == evals[best_step]
    best = load_file(str(run / "best" / "model.safetensors"))
    at_best = load_file(str(run / f"checkpoint-{best_step}" / "model.safetensors"))
    assert all(torch.equal(best[name], at_best[name]) for name in best)
    assert FusedModel.from_pretrained(run / "best").predict(flipped, "intent") == (
        FusedModel.from_pretrained(run / f"checkpoint-{best_step}").predict(flipped, "intent")
    )
    summary = json.loads((run / f"checkpoint-{result.step}" / "trainer_state.json").read_text())
    assert summary["best_step"] == best_step


class SlowEvaluation(TrainerCallback):
    def on_evaluate(self, trainer, step, metrics):
        time.sleep(0.3)


def test_training_seconds_leave_out_evaluation_time(tmp_path):
    train, evaluation = datasets(("intent",))
    args = arguments(tmp_path, max_steps=4, eval_steps=1, metric_for_best_model="intent/loss")
    model = build_model(dropout=0.0, tasks=("intent",))
    trainer = Trainer(model, train, evaluation, args, callbacks=[SlowEvaluation()])
    trainer.train()
    finished = trainer.training_seconds
    time.sleep(0.05)
    assert trainer.training_seconds == finished  # the clock stops when train() returns
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    last_eval = [r for r in records if r["split"] == "eval"][-1]
    assert last_eval["step"] == 4
    assert last_eval["seconds"] - last_eval["training_seconds"] >= 3 * 0.3  # earlier evals


def test_time_budget_stops_training_and_records_the_curve(tmp_path):
    train, evaluation = datasets(("intent",))
    budget = TimeBudget(1e-6)
    args = arguments(tmp_path, max_steps=50, eval_steps=0, metric_for_best_model="intent/loss")
    model = build_model(dropout=0.0, tasks=("intent",))
    result = Trainer(model, train, evaluation, args, callbacks=[budget]).train()
    assert result.step == 1 and budget.exhausted
    assert [(step, sorted(m)) for _, step, m in budget.curve] == [
        (1, ["intent/accuracy", "intent/loss", "intent/macro_f1"])
    ]
    assert (tmp_path / "run" / "best" / "model.safetensors").exists()
    with pytest.raises(ConfigError, match="positive number of seconds"):
        TimeBudget(0)


# ---------------------------------------------------------------------------- configuration
def test_training_arguments_round_trip_json_and_yaml(tmp_path):
    args = TrainingArguments(
        max_steps=7, batch_size={"a": 2, "b": 3}, task_weights={"a": 0.5}, bf16=True
    )
    for name in ("args.json", "args.yaml"):
        args.save(tmp_path / name)
        assert TrainingArguments.load(tmp_path / name) == args
    with pytest.raises(ConfigError, match="unknown training fields \\['epochs'\\]"):
        TrainingArguments.from_dict({"epochs": 3})
    with pytest.raises(ConfigError, match="lr_scheduler must be one of"):
        TrainingArguments(lr_scheduler="step")
    with pytest.raises(ConfigError, match="'task/metric'"):
        TrainingArguments(metric_for_best_model="accuracy")


def test_trainer_names_bad_tasks(tmp_path):
    train, _ = datasets(("intent",))
    model = build_model(tasks=("intent",))
    with pytest.raises(ConfigError, match="train task 'sentiment' has no head"):
        Trainer(model, {"sentiment": train["intent"]}, args=arguments(tmp_path))
    args = arguments(tmp_path, metric_for_best_model="intent/accuracy")
    with pytest.raises(ConfigError, match="needs eval data for task 'intent'"):
        Trainer(model, train, args=args)


def test_kgmm_train_and_evaluate_from_yaml(tmp_path, capsys):
    train, evaluation = datasets(("intent",))
    for name, samples in (("train.jsonl", train["intent"]), ("dev.jsonl", evaluation["intent"])):
        (tmp_path / name).write_text("".join(json.dumps(s) + "\n" for s in samples))
    (tmp_path / "graph.tsv").write_text("flu\thas_symptom\tfever\n")
    model = build_model(tasks=("intent",)).config.to_dict()
    del model["heads"]["intent"]["labels"]  # found in the training manifest
    config = {
        "model": model,
        "graph": "graph.tsv",
        "data": {"intent": {"train": "train.jsonl", "eval": "dev.jsonl"}},
        "training": {
            "output_dir": str(tmp_path / "out"),
            "max_steps": 4,
            "batch_size": 8,
            "device": "cpu",
            "progress_bar": False,
        },
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", str(tmp_path / "run.yaml")]) == 0
    summary = json.loads(capsys.readouterr().out)
    checkpoint = tmp_path / "out" / "checkpoint-4"
    assert summary["step"] == 4 and summary["checkpoint"] == str(checkpoint)
    assert (checkpoint / "model.safetensors").is_file()
    labels = json.loads((checkpoint / "config.json").read_text())["heads"]["intent"]["labels"]
    assert labels == ["billing", "refund", "shipping"]
    assert main(["evaluate", str(checkpoint), "--data", str(tmp_path / "dev.jsonl"),
                 "--task", "intent"]) == 0  # fmt: skip
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics) == {"intent/loss", "intent/accuracy", "intent/macro_f1"}
    assert main(["evaluate", str(checkpoint), "--data", str(tmp_path / "dev.jsonl"),
                 "--task", "qa"]) == 2  # fmt: skip
    assert "unknown task 'qa'" in capsys.readouterr().err


def test_learning_rate_patterns_give_parameters_their_own_rate():
    from kgmm.training.optimization import build_optimizer

    model = build_model()
    args = TrainingArguments(
        learning_rate=1e-4, learning_rates={"*cross_attn_gate*": 5e-2, "heads.*": 1e-3}
    )
    optimizer = build_optimizer(model, args)
    rate_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    named = dict(model.named_parameters())
    gate = next(n for n in named if "cross_attn_gate" in n)
    head = next(n for n in named if n.startswith("heads."))
    other = next(n for n in named if n.startswith("fusion.input_proj"))
    assert rate_of[id(named[gate])] == 5e-2
    assert rate_of[id(named[head])] == 1e-3
    assert rate_of[id(named[other])] == 1e-4
    assert len(rate_of) == sum(p.requires_grad for p in model.parameters())
