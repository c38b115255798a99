"""The first-minute demo: which disease does a drug treat, for drugs the model never saw.

Questions are generated from the bundled graph's ``treats`` facts ("What is ibuprofen used
to treat?" -> the diseases it treats), split by drug so that test drugs are unseen. A
MiniLM text encoder (frozen) is fused with the graph three ways, with the same seed:
knowledge on, off, and random (same number of entities, drawn uniformly). Only the graph
tells which disease an unseen drug treats, so "on" should win; the run prints the test
hit rate of each and the entities the model attended for one test question.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import defaultdict
from pathlib import Path

import torch

from kgmm.fusion import FusionConfig
from kgmm.graph import KnowledgeGraph
from kgmm.graph.embeddings import EntityEmbeddings
from kgmm.model import FusedConfig, FusedModel
from kgmm.resources import bundled_graph_path

MIN_DRUGS_PER_DISEASE = 4
TEST_FRACTION = 0.3
BATCH_SIZE = 16
LEARNING_RATE = 2e-3
GATE_LEARNING_RATE = 5e-2


def treatment_questions(
    kg: KnowledgeGraph, seed: int, relation: str = "treats"
) -> tuple[list[dict], list[dict], list[str]]:
    """Samples split by drug: training has one ``{"text", "label"}`` per (drug, disease)
    fact, testing one ``{"text", "answers"}`` per drug with all the diseases it treats."""
    treats = kg.triples[kg.triples[:, 1] == kg.relation_id(relation)]
    drugs_per_disease: dict[int, int] = defaultdict(int)
    for _, _, disease in treats:
        drugs_per_disease[int(disease)] += 1
    labels = sorted(
        kg.entity(d).name for d, n in drugs_per_disease.items() if n >= MIN_DRUGS_PER_DISEASE
    )
    chosen = set(labels)
    diseases_of: dict[int, list[str]] = defaultdict(list)
    for drug, _, disease in treats:
        name = kg.entity(int(disease)).name
        if name in chosen:
            diseases_of[int(drug)].append(name)
    drugs = sorted(diseases_of)
    random.Random(seed).shuffle(drugs)
    cut = int(len(drugs) * (1 - TEST_FRACTION))

    def question(drug: int) -> str:
        return f"What is {kg.entity(drug).name} used to treat?"

    train = [{"text": question(d), "label": name} for d in drugs[:cut] for name in diseases_of[d]]
    test = [{"text": question(d), "answers": diseases_of[d]} for d in drugs[cut:]]
    return train, test, labels


def build_model(
    kg: KnowledgeGraph,
    labels: list[str],
    knowledge: str,
    seed: int,
    entity_embeddings: EntityEmbeddings | None = None,
) -> FusedModel:
    config = FusedConfig(
        text={"freeze": True, "max_length": 32},
        fusion=FusionConfig(d_model=256, num_heads=4, dropout=0.1, knowledge=knowledge),
        heads={"treats": {"type": "classification", "labels": labels}},
        linking={"hops": 1, "max_entities": 32},
        seed=seed,
    )
    return FusedModel(config, kg=kg, entity_embeddings=entity_embeddings)


def train(model: FusedModel, samples: list[dict], steps: int, seed: int) -> float:
    collate = model.collator("treats")
    # The knowledge gates start at exactly 0 and get small gradients; a higher learning rate
    # lets them open within a short run (the rest of the model is unaffected).
    gates = [p for n, p in model.named_parameters() if n.endswith("gate")]
    others = [p for n, p in model.named_parameters() if p.requires_grad and not n.endswith("gate")]
    optimizer = torch.optim.AdamW(
        [{"params": others}, {"params": gates, "lr": GATE_LEARNING_RATE, "weight_decay": 0.0}],
        lr=LEARNING_RATE,
    )
    order = random.Random(seed)
    model.train()
    loss = torch.tensor(0.0)
    for _ in range(steps):
        batch = collate(order.sample(samples, min(BATCH_SIZE, len(samples))))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(task="treats", **batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def hit_rate(model: FusedModel, samples: list[dict]) -> float:
    """Share of test drugs whose predicted disease is one they treat."""
    predicted = model.predict(samples, task="treats")
    return sum(p in s["answers"] for p, s in zip(predicted, samples)) / len(samples)


def explain(
    model: FusedModel, kg: KnowledgeGraph, sample: dict, k: int = 5
) -> list[tuple[str, float]]:
    model.eval()
    with torch.no_grad():
        out = model(task="treats", **model.collator("treats", targets=False)([sample]))
    weights = out.entity_attention[0][out.entity_mask[0]]
    ids = out.entity_ids[0][out.entity_mask[0]]
    order = weights.argsort(descending=True)[:k]
    return [(kg.entity(int(ids[i])).name, float(weights[i])) for i in order]


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    torch.manual_seed(args.seed)
    kg = KnowledgeGraph.load(args.graph or bundled_graph_path("medical"))
    train_set, test_set, labels = treatment_questions(kg, args.seed)
    print(
        f"{kg}; {len(train_set)} training facts, {len(test_set)} unseen test drugs, "
        f"{len(labels)} diseases"
    )
    entity_embeddings = EntityEmbeddings.from_text(kg)
    results = {}
    for knowledge in ("on", "off", "random"):
        model = build_model(kg, labels, knowledge, args.seed, entity_embeddings)
        loss = train(model, train_set, args.steps, args.seed)
        results[knowledge] = hit_rate(model, test_set)
        print(
            f"knowledge={knowledge:<6} final loss {loss:.3f}  test hit@1 {results[knowledge]:.3f}  "
            f"gate {model.fusion.gate_values()[0]:+.3f}"
        )
        if knowledge == "on":
            example = test_set[0]
            print(
                f"  {example['text']!r} -> {model.predict([example], task='treats')[0]}"
                f"  (true: {example['answers']})"
            )
            for name, weight in explain(model, kg, example):
                print(f"    attended {name:<40} {weight:.3f}")
            model.save_pretrained(args.out)
    seconds = time.perf_counter() - start
    Path(args.out).mkdir(parents=True, exist_ok=True)
    summary = {"test_hit_at_1": results, "seed": args.seed, "steps": args.steps, "seconds": seconds}
    (Path(args.out) / "demo_results.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"done in {seconds:.0f} s; model saved to {args.out}")
    return 0
