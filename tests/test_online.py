"""Online adaptation: feedback is learnt, the anchor keeps weights near the deployed ones,
replay keeps earlier samples right, runs repeat with a seed, and the reservoir buffer."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from conftest import import_benchmark, shared_dataset
from training_run import build_model, make_samples

import kgmm
from kgmm import ConfigError, DataError
from kgmm.metrics import accuracy
from kgmm.training import ReplayBuffer, Trainer, TrainingArguments, adapt

# Corrections: "receipt" was never seen in training; users say it means billing.
FEEDBACK = [{"text": f"{w} receipt", "label": "billing"} for w in ("my", "a", "the", "now")]
PROBES = [{"text": f"{w} receipt", "label": "billing"} for w in ("please", "help", "today")]


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """A tiny intent model trained on keyword samples (the earlier data)."""
    model = build_model(dropout=0.0, tasks=("intent",))
    args = TrainingArguments(
        output_dir=str(tmp_path_factory.mktemp("deploy")),
        max_steps=40,
        batch_size=8,
        learning_rate=3e-3,
        device="cpu",
        progress_bar=False,
    )
    Trainer(model, {"intent": earlier()}, args=args).train()
    return model.eval()


def earlier() -> list[dict]:
    return make_samples("intent", 48, seed=0)


def correct(model, samples) -> float:
    return accuracy([s["label"] for s in samples], model.predict(samples, task="intent"))


def distance(model, reference) -> float:
    pairs = zip(model.parameters(), reference.parameters())
    return float(sum(((p.detach() - q.detach()) ** 2).sum() for p, q in pairs)) ** 0.5


def test_feedback_is_learnt_and_earlier_samples_stay_right(deployed, tmp_path):
    assert correct(deployed, FEEDBACK) < 1.0
    model = copy.deepcopy(deployed)
    result = kgmm.adapt(
        model, FEEDBACK, "intent", replay=earlier(), steps=30, learning_rate=3e-3, batch_size=8
    )
    assert correct(model, FEEDBACK) == 1.0 and correct(model, PROBES) == 1.0
    assert correct(model, earlier()) >= correct(deployed, earlier()) - 0.05
    assert result.steps == 30 and len(result.losses) == 30
    assert result.losses[-1] < result.losses[0]
    assert set(result.relative_change) == {"encoders.text", "fusion", "heads.intent"}
    assert result.weight_distance == pytest.approx(distance(model, deployed), rel=1e-4)


def test_without_replay_earlier_samples_are_forgotten(deployed):
    model = copy.deepcopy(deployed)
    adapt(model, FEEDBACK, "intent", steps=30, learning_rate=3e-3, anchor_weight=0.0)
    assert correct(model, earlier()) < correct(deployed, earlier()) - 0.2


def test_a_large_anchor_keeps_weights_near_the_deployed_ones(deployed):
    distances = {}
    for weight in (0.0, 10.0):
        model = copy.deepcopy(deployed)
        result = adapt(
            model,
            FEEDBACK,
            "intent",
            replay=earlier(),
            steps=20,
            learning_rate=3e-3,
            anchor_weight=weight,
            batch_size=8,
        )
        distances[weight] = result.weight_distance
    assert distances[10.0] < 0.5 * distances[0.0]


def test_same_seed_same_weights_other_seed_other_weights(deployed):
    def adapted(seed: int) -> dict[str, torch.Tensor]:
        model = copy.deepcopy(deployed)
        adapt(model, FEEDBACK, "intent", replay=earlier(), steps=5, batch_size=8, seed=seed)
        return model.state_dict()

    first, again, other = adapted(0), adapted(0), adapted(1)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_bad_arguments_are_explained(deployed):
    with pytest.raises(DataError, match="at least one feedback sample"):
        adapt(deployed, [], "intent")
    with pytest.raises(ConfigError, match="replay_ratio must be in"):
        adapt(deployed, FEEDBACK, "intent", replay_ratio=1.0)
    with pytest.raises(ConfigError, match="capacity must be >= 1"):
        ReplayBuffer(0)


def test_reservoir_keeps_a_uniform_seeded_sample():
    buffer = ReplayBuffer(capacity=10, seed=0)
    buffer.extend({"id": i} for i in range(5))
    assert [s["id"] for s in buffer.samples] == list(range(5))  # under capacity: everything
    buffer.extend({"id": i} for i in range(5, 1000))
    assert len(buffer) == 10 and buffer.seen == 1000
    again = ReplayBuffer(capacity=10, seed=0)
    again.extend({"id": i} for i in range(1000))
    assert again.samples == buffer.samples
    early = late = 0
    for seed in range(300):
        kept = ReplayBuffer(capacity=10, seed=seed)
        kept.extend({"id": i} for i in range(1000))
        ids = [s["id"] for s in kept.samples]
        early += sum(i < 500 for i in ids)
        late += sum(i >= 500 for i in ids)
    assert abs(early - late) < 0.1 * (early + late)  # each half kept about equally often


@pytest.mark.data
def test_quick_benchmark_reports_before_and_after(tmp_path):
    data = shared_dataset("banking77")
    out = tmp_path / "online.json"
    import_benchmark("online_adaptation").main(
        ["--quick", "--epochs", "1", "--data-dir", str(data), "--out", str(out)]
    )
    summary = json.loads(out.read_text())
    assert len(summary["feedback_intents"]) == 2 and summary["feedback_samples"] == 6
    assert [r["variant"] for r in summary["rows"]] == ["feedback only", "replay", "replay + anchor"]
    for row in summary["rows"]:
        assert row["steps"] == 5 and row["weight_distance"] > 0
        assert 0.0 <= row["feedback_intents_accuracy_after"] <= 1.0
