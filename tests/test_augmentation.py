"""Text augmentation: alias and sibling replacement, EDA deletion/swap, the training hook."""

from __future__ import annotations

import copy
import json
import pickle
import re

import networkx as nx
import numpy as np
import pytest
from conftest import import_benchmark, shared_dataset
from training_run import build_model, datasets

from kgmm import ConfigError, KnowledgeGraph
from kgmm.data import TextAugmenter
from kgmm.data.augment import random_deletion, random_swap, surface_forms
from kgmm.training import Augmentation, Trainer, TrainerCallback, TrainingArguments
from kgmm.training.augmentation import AugmentingCollator


def banking_graph() -> KnowledgeGraph:
    graph = nx.MultiDiGraph()
    nodes = {
        "transfer": ("Überweisung", "bank transfer|wire|Geldtransfer", "Product"),
        "card": ("Karte", "bank card|Kärtchen", "Product"),
        "visa": ("Visa", "visa card", "Network"),
        "mastercard": ("Mastercard", "master card", "Network"),
        "amex": ("American Express", "amex", "Network"),
        "fee": ("Gebühr", "charge|fees", "Fee"),
    }
    for key, (name, aliases, kind) in nodes.items():
        graph.add_node(key, name=name, aliases=aliases, type=kind)
    graph.add_edge("card", "visa", relation="runs_on")
    graph.add_edge("card", "mastercard", relation="runs_on")
    graph.add_edge("transfer", "fee", relation="costs")
    return KnowledgeGraph.from_networkx(graph)


KG = banking_graph()
TEXT = "Ich möchte 🏦 meine Überweisung stornieren; die Gebühr ist zu hoch!"


def test_alias_replacement_writes_another_form_of_the_same_entity_at_the_right_offsets():
    augmenter = TextAugmenter(KG, alias_rate=1.0)
    pattern = re.compile("^Ich möchte 🏦 meine (.+) stornieren; die (.+) ist zu hoch!$")
    transfer = set(surface_forms(KG, KG.entity_id("transfer"))) - {"Überweisung"}
    fee = set(surface_forms(KG, KG.entity_id("fee"))) - {"Gebühr"}
    seen_transfer, seen_fee = set(), set()
    for seed in range(40):
        match = pattern.match(augmenter.augment(TEXT, np.random.default_rng(seed)))
        assert match is not None
        seen_transfer.add(match.group(1))
        seen_fee.add(match.group(2))
    assert seen_transfer == transfer == {"transfer", "bank transfer", "wire", "Geldtransfer"}
    assert seen_fee == fee


def test_sibling_replacement_is_off_by_default_and_limited_to_named_types():
    text = "is my visa accepted for a transfer"
    names = ("Mastercard", "master card", "American Express", "amex")
    aliases_only = TextAugmenter(KG, alias_rate=1.0)
    outputs = {aliases_only.augment(text, np.random.default_rng(s)) for s in range(30)}
    assert not any(name in out for out in outputs for name in names)
    assert KG.entity_id("amex") not in TextAugmenter(KG).siblings(KG.entity_id("visa"))
    siblings = TextAugmenter(KG, sibling_types={"Network"}, sibling_rate=1.0)
    assert siblings.siblings(KG.entity_id("visa")) == [KG.entity_id("mastercard")]
    outputs = {siblings.augment(text, np.random.default_rng(s)) for s in range(30)}
    assert outputs == {  # "transfer" is a Product: left as written
        "is my Mastercard accepted for a transfer",
        "is my master card accepted for a transfer",
    }
    with pytest.raises(ConfigError, match="sibling_types"):
        TextAugmenter(KG, sibling_rate=0.5)
    with pytest.raises(ConfigError, match="need a knowledge graph"):
        TextAugmenter(alias_rate=0.5)
    with pytest.raises(ConfigError, match="deletion_rate must be in"):
        TextAugmenter(deletion_rate=2.0)


def test_deletion_and_swap_keep_words_and_at_least_one():
    rng = np.random.default_rng(0)
    text = "please help me top up my account today"
    for _ in range(20):
        assert len(random_deletion(text, 1.0, rng).split()) == 1
        assert random_deletion(text, 1.0, rng) in text.split()
        swapped = random_swap(text, 0.3, rng)
        assert sorted(swapped.split()) == sorted(text.split())
    assert random_deletion("hello", 1.0, rng) == "hello"
    assert random_swap("hello", 1.0, rng) == "hello"
    assert random_swap(text, 0.3, np.random.default_rng(1)) != text
    shares = [len(random_deletion(text, 0.25, rng).split()) for _ in range(400)]
    assert np.mean(shares) == pytest.approx(8 * 0.75, abs=0.3)


SAMPLES = [
    {"text": f"my visa card payment {i} was a wire transfer", "label": "x"} for i in range(8)
]


def identity(batch: list[dict]) -> list[dict]:
    return batch


def test_collator_is_seeded_by_batch_never_mutates_and_pickles():
    augmenter = TextAugmenter(KG, alias_rate=0.5, deletion_rate=0.1, swap_rate=0.1)
    collator = AugmentingCollator(augmenter, identity, probability=0.5, seed=3)
    original = copy.deepcopy(SAMPLES)
    first = collator(SAMPLES)
    assert SAMPLES == original
    pickle.dumps(collator)  # DataLoader workers receive the collator pickled
    assert first == collator(SAMPLES) == copy.deepcopy(collator)(SAMPLES)
    changed = sum(a["text"] != b["text"] for a, b in zip(first, SAMPLES))
    assert 0 < changed < len(SAMPLES)
    assert all(a["label"] == "x" for a in first)
    reordered = collator(SAMPLES[::-1])[::-1]
    assert reordered != first  # another batch, another draw
    other_seed = AugmentingCollator(augmenter, identity, probability=0.5, seed=4)
    assert other_seed(SAMPLES) != first


class SeenTexts(TrainerCallback):
    """Records the texts the model's collator receives (placed before ``Augmentation``, its
    wrapper is the inner one)."""

    def __init__(self) -> None:
        self.texts: list[list[str]] = []

    def wrap_collator(self, trainer, task, collator):
        def record(samples):
            self.texts.append([s["text"] for s in samples])
            return collator(samples)

        return record


def train(tmp_path, train_data, max_steps: int, **fields):
    seen = SeenTexts()
    augmentation = Augmentation(TextAugmenter(deletion_rate=0.3, swap_rate=0.2), probability=1)
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=max_steps,
        batch_size=4,
        device="cpu",
        progress_bar=False,
        num_workers=0,
        **fields,
    )
    model = build_model(dropout=0.0, tasks=("intent",))
    Trainer(model, {"intent": train_data}, args=args, callbacks=[seen, augmentation]).train()
    return seen.texts


def test_training_sees_augmented_copies_deterministically_across_epochs_and_resume(tmp_path):
    data, _ = datasets(("intent",), train_size=8)
    data = data["intent"]
    original = copy.deepcopy(data)
    texts = train(tmp_path / "a", data, max_steps=6)
    assert data == original
    originals = {s["text"] for s in data}
    assert sum(t not in originals for batch in texts for t in batch) > 12
    assert texts == train(tmp_path / "b", data, max_steps=6)
    first_epoch, second_epoch = sorted(sum(texts[:2], [])), sorted(sum(texts[2:4], []))
    assert first_epoch != second_epoch  # a fresh draw each epoch
    train(tmp_path / "c", data, max_steps=3, save_steps=3)
    resumed = train(tmp_path / "c", data, max_steps=6, resume_from_checkpoint=True)
    assert resumed == texts[3:]
    with pytest.raises(ConfigError, match="no training data"):
        Trainer(
            build_model(dropout=0.0, tasks=("intent",)),
            {"intent": data},
            args=TrainingArguments(output_dir=str(tmp_path / "d"), max_steps=1, device="cpu"),
            callbacks=[Augmentation(TextAugmenter(), tasks=("qa",))],
        ).train()


@pytest.mark.data
def test_quick_benchmark_counts_linked_utterances_and_trains(tmp_path):
    out = tmp_path / "augmentation.json"
    import_benchmark("augmentation").main(
        [
            "--quick",
            "--configs",
            "both",
            "--data-dir",
            str(shared_dataset("banking77")),
            "--out",
            str(out),
        ]
    )
    summary = json.loads(out.read_text())
    linking = summary["linking"]
    assert 0 < linking["alias_replaceable"] <= linking["with_linked_mention"] <= 40
    assert [r["augmentation"] for r in summary["rows"]] == ["both"]
    assert summary["rows"][0]["test_accuracy"] > 0.5
