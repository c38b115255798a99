"""Customer-support intent classification on BANKING77, with a small banking knowledge graph.

The MiniLM text encoder is fine-tuned with a classification head (dynamic padding, bf16
autocast on bf16 hardware, warmup then linear decay). With the full training set, 10% of it
(stratified, fixed seed) is held out for early stopping and the best held-out model is
tested; with ``--few-shot N`` (N examples per intent, no extra labelled data) the schedule
is fixed. Utterances are linked to ``graphs/banking.tsv`` (cards, transfers, top-ups,
problems such as "declined" or "charged twice", actions such as "activate") and the fused
tokens attend over the linked entities and their 1-hop neighbours.

    python examples/customer_support.py --few-shot 10 --ablation
    python examples/customer_support.py --knowledge on          # full training set
    python examples/customer_support.py --quick                 # smoke test, well under 90 s
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import torch

import kgmm
from kgmm.data.intents import few_shot, load_intent_csv, stratified_split
from kgmm.fusion import FusionConfig
from kgmm.metrics import accuracy, confidence_interval, format_table, macro_f1
from kgmm.training import finish_run

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "banking77"
DEFAULT_GRAPH = REPO / "graphs" / "banking.tsv"
TASK = "intent"
KNOWLEDGE_MODES = ("on", "off", "random")
HELD_OUT_FRACTION = 0.1
# Casanueva et al. 2020 (arXiv 2003.04807), Table 3: test accuracy (%) on 3,080 utterances.
PUBLISHED = {
    "full": {"BERT-Large fine-tuned": 93.66, "USE+ConveRT": 93.36},
    "10-shot": {"USE+ConveRT": 85.19},
}
# --quick: this many intents (the first in sorted order), examples per intent to train on
# and to test on, and epochs.
QUICK_INTENTS, QUICK_TRAIN, QUICK_TEST, QUICK_EPOCHS = 10, 16, 10, 4
# The encoder is pretrained; the fusion layer and head start fresh and learn faster, and the
# knowledge gates (tanh(0) = 0 at the start) need a large rate to open within a few epochs.
FRESH_LEARNING_RATES = {"*cross_attn_gate*": 1e-2, "fusion.*": 5e-4, "heads.*": 1e-3}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA,
        help="folder with train.csv and test.csv (text,category)",
    )
    parser.add_argument("--graph", type=Path, default=DEFAULT_GRAPH)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "customer_support")
    parser.add_argument("--knowledge", choices=KNOWLEDGE_MODES, default="on")
    parser.add_argument(
        "--ablation",
        action="store_true",
        help="train with knowledge on, off and random (same seed)",
    )
    parser.add_argument(
        "--few-shot",
        type=int,
        default=None,
        metavar="N",
        help="train on N examples per intent (fixed schedule, no held-out set)",
    )
    parser.add_argument("--quick", action="store_true", help="small slice, for a smoke test")
    parser.add_argument(
        "--epochs", type=float, default=None, help="default: 3 (full), 10 (few-shot), 4 (quick)"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=1e-4,
        help="of the text encoder (fusion, head and gates: see the source)",
    )
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument(
        "--patience",
        type=int,
        default=3,
        help="held-out evaluations (two per epoch) without improvement",
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def load_splits(args: argparse.Namespace) -> tuple[list[dict], list[dict], list[dict]]:
    """``(train, held_out, test)``; ``held_out`` is empty in few-shot and quick mode."""
    if not args.data_dir.is_dir():
        raise kgmm.DataError(
            f"{args.data_dir}: BANKING77 folder not found; pass --data-dir with train.csv "
            "and test.csv"
        )
    train = load_intent_csv(args.data_dir / "train.csv")
    test = load_intent_csv(args.data_dir / "test.csv")
    unseen = sorted({s["label"] for s in test} - {s["label"] for s in train})
    if unseen:
        raise kgmm.DataError(f"{args.data_dir / 'test.csv'}: intents not in train.csv: {unseen}")
    if args.quick:
        kept = set(sorted({s["label"] for s in train})[:QUICK_INTENTS])
        train = few_shot([s for s in train if s["label"] in kept], QUICK_TRAIN, args.seed)
        test = few_shot([s for s in test if s["label"] in kept], QUICK_TEST, args.seed)
        return train, [], test
    if args.few_shot:
        return few_shot(train, args.few_shot, args.seed), [], test
    train, held_out = stratified_split(train, HELD_OUT_FRACTION, args.seed)
    return train, held_out, test


def build_model(
    kg: kgmm.KnowledgeGraph, labels: list[str], knowledge: str, args: argparse.Namespace
) -> kgmm.FusedModel:
    config = kgmm.FusedConfig(
        text={"max_length": args.max_length},
        fusion=FusionConfig(
            d_model=384, num_heads=6, num_layers=1, dropout=0.1, knowledge=knowledge
        ),
        heads={TASK: {"type": "classification", "labels": labels}},
        linking={"hops": 1, "max_entities": 32},
        seed=args.seed,
    )
    return kgmm.FusedModel(config, kg=kg)


def train_and_test(
    kg: kgmm.KnowledgeGraph,
    labels: list[str],
    knowledge: str,
    splits: tuple[list[dict], list[dict], list[dict]],
    args: argparse.Namespace,
) -> dict:
    train, held_out, test = splits
    torch.manual_seed(args.seed)
    model = build_model(kg, labels, knowledge, args)
    output_dir = args.out / f"knowledge-{knowledge}"
    epochs = args.epochs or (QUICK_EPOCHS if args.quick else 10 if args.few_shot else 3)
    steps_per_epoch = -(-len(train) // args.batch_size)
    training = kgmm.TrainingArguments(
        output_dir=str(output_dir),
        num_epochs=epochs,
        batch_size=args.batch_size,
        eval_batch_size=128,
        learning_rate=args.learning_rate,
        learning_rates=FRESH_LEARNING_RATES,
        warmup_ratio=0.1,
        bf16="auto",
        group_by_length=True,
        eval_steps=max(1, steps_per_epoch // 2) if held_out else 0,
        save_total_limit=1,
        metric_for_best_model=f"{TASK}/accuracy" if held_out else None,
        early_stopping_patience=args.patience if held_out else None,
        seed=args.seed,
        progress_bar=not args.quick,
    )
    trainer = kgmm.Trainer(model, {TASK: train}, {TASK: held_out} if held_out else None, training)
    start = time.perf_counter()
    result = trainer.train()
    train_seconds = time.perf_counter() - start
    if held_out:
        model = kgmm.FusedModel.from_pretrained(output_dir / "best")
    start = time.perf_counter()
    predicted = model.predict(test, task=TASK, batch_size=128)
    gold = [s["label"] for s in test]
    acc = accuracy(gold, predicted)
    low, high = confidence_interval(sum(p == g for p, g in zip(predicted, gold)), len(gold))
    return {
        "knowledge": knowledge,
        "test_accuracy": acc,
        "test_accuracy_ci95": [low, high],
        "test_macro_f1": macro_f1(gold, predicted),
        "held_out_accuracy": result.best_metric,
        "best_step": result.best_step,
        "steps": result.step,
        "stopped_early": result.stopped_early,
        "fusion_gate": model.fusion.gate_values()[0],
        "train_seconds": train_seconds,
        "train_samples_per_second": result.step * args.batch_size / train_seconds,
        "test_seconds": time.perf_counter() - start,
    }


def linked_fraction(kg: kgmm.KnowledgeGraph, samples: list[dict]) -> float:
    """Share of utterances with at least one entity mention in the graph."""
    linker = kgmm.EntityLinker(kg)
    return sum(bool(linker.link(s["text"])) for s in samples) / len(samples)


def setting_name(args: argparse.Namespace) -> str:
    if args.quick:
        return f"quick ({QUICK_INTENTS} intents, {QUICK_TRAIN}-shot)"
    return f"{args.few_shot}-shot" if args.few_shot else "full"


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.perf_counter()
    kg = kgmm.KnowledgeGraph.load(args.graph)
    splits = load_splits(args)
    train, held_out, test = splits
    labels = sorted({s["label"] for s in train})
    majority = Counter(s["label"] for s in test).most_common(1)[0][1] / len(test)
    setting = setting_name(args)
    print(
        f"BANKING77 {setting}: {len(train)} train, {len(held_out)} held-out, {len(test)} test "
        f"utterances, {len(labels)} intents; {kg}; majority baseline {majority:.4f}"
    )
    modes = KNOWLEDGE_MODES if args.ablation else (args.knowledge,)
    runs = [train_and_test(kg, labels, mode, splits, args) for mode in modes]
    published = PUBLISHED.get(setting, {})
    rows = [
        {
            "model": f"MiniLM-L6 + KG ({r['knowledge']})",
            "accuracy %": 100 * r["test_accuracy"],
            "95% CI": f"{100 * r['test_accuracy_ci95'][0]:.1f}-"
            f"{100 * r['test_accuracy_ci95'][1]:.1f}",
            "macro F1 %": 100 * r["test_macro_f1"],
            "gate": r["fusion_gate"],
            "train s": r["train_seconds"],
        }
        for r in runs
    ]
    rows += [
        {"model": f"{name} (published)", "accuracy %": value} for name, value in published.items()
    ]
    print(
        format_table(
            rows,
            ["model", "accuracy %", "95% CI", "macro F1 %", "gate", "train s"],
            float_format=".2f",
        )
    )
    summary = {
        "dataset": "banking77",
        "setting": setting,
        "train_utterances": len(train),
        "held_out_utterances": len(held_out),
        "test_utterances": len(test),
        "intents": len(labels),
        "majority_baseline": majority,
        "graph": {
            "path": str(args.graph),
            "entities": kg.num_entities,
            "triples": kg.num_triples,
            "test_utterances_linked": linked_fraction(kg, test),
        },
        "runs": runs,
        "published_test_accuracy_percent": published,
    }
    return finish_run(args, summary, started)


if __name__ == "__main__":
    try:
        main()
    except kgmm.KGMMError as error:
        sys.exit(f"customer_support: error: {error}")
