"""Online adaptation from feedback on BANKING77: fix the intents a deployed model gets wrong.

1. Deploy: the shared model (MiniLM + fusion + intent head) trains on N utterances per
   intent from ``train.csv``.
2. Feedback: a held-out pool of other ``train.csv`` utterances (never the test set) is
   predicted; the ``--intents`` intents with the lowest pool accuracy are chosen and up to
   ``--per-intent`` of their pool utterances (misclassified ones first) come back with the
   right label.
3. Adapt: :func:`kgmm.adapt` on that feedback, alone, with replay of the deployment's
   training data, and with replay plus the L2-SP anchor.

Reported: official test-set accuracy on the feedback intents and on all other intents,
before and after. Each configuration runs in its own process (``run_isolated``).

    python benchmarks/online_adaptation.py --out results/online_adaptation.json
    python benchmarks/online_adaptation.py --quick
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path

from banking77_setup import (
    DEFAULT_DATA,
    REPO,
    TASK,
    build_model,
    load_setting,
    run_isolated,
    training_arguments,
    write_results,
)

import kgmm
from kgmm.data.intents import few_shot, load_intent_csv
from kgmm.metrics import accuracy, format_table

VARIANTS = {  # name -> (replay the deployment's training data, anchor weight)
    "feedback only": (False, 0.0),
    "replay": (True, 0.0),
    "replay + anchor": (True, 1.0),
}


def feedback_pool(options: dict, train: list[dict], labels: list[str]) -> list[dict]:
    """``pool_per_label`` utterances per intent from ``train.csv`` not used for training."""
    used = {(s["text"], s["label"]) for s in train}
    rest = [
        s
        for s in load_intent_csv(Path(options["data_dir"]) / "train.csv")
        if s["label"] in labels and (s["text"], s["label"]) not in used
    ]
    return few_shot(rest, options["pool_per_label"], seed=1)


def deploy(deployed_dir: str, options: dict) -> dict:
    """Train and save the deployed model (or load ``options["deployed"]``, a model this
    setup trained on the same data); its predictions on the test set and the pool."""
    train, test, labels = load_setting(
        Path(options["data_dir"]), options["per_label"], quick=options["quick"]
    )
    if options["deployed"]:
        model = kgmm.FusedModel.from_pretrained(options["deployed"])
    else:
        model = build_model(labels)
        with tempfile.TemporaryDirectory() as scratch:
            args = training_arguments(Path(scratch), options["epochs"])
            kgmm.Trainer(model, {TASK: train}, args=args).train()
    model.save_pretrained(deployed_dir)
    pool = feedback_pool(options, train, labels)
    return {
        "test_predictions": model.predict(test, task=TASK, batch_size=128),
        "pool": pool,
        "pool_predictions": model.predict(pool, task=TASK, batch_size=128),
    }


def choose_feedback(pool: list[dict], predicted: list[str], intents: int, per_intent: int):
    """The ``intents`` worst intents on the pool and their corrected utterances."""
    right, total = Counter(), Counter()
    for sample, guess in zip(pool, predicted):
        total[sample["label"]] += 1
        right[sample["label"]] += guess == sample["label"]
    worst = sorted(total, key=lambda label: (right[label] / total[label], label))[:intents]
    feedback = []
    for label in worst:
        rows = [
            (guess == s["label"], s) for s, guess in zip(pool, predicted) if s["label"] == label
        ]
        rows.sort(key=lambda row: row[0])  # misclassified first, stable otherwise
        feedback.extend(sample for _, sample in rows[:per_intent])
    pool_accuracy = {label: right[label] / total[label] for label in worst}
    return worst, feedback, pool_accuracy


def split_accuracy(test: list[dict], predicted: list[str], intents: list[str]) -> dict:
    """Accuracy on the test utterances of ``intents`` and on all the others."""
    inside = [(s["label"], p) for s, p in zip(test, predicted) if s["label"] in intents]
    outside = [(s["label"], p) for s, p in zip(test, predicted) if s["label"] not in intents]
    return {
        "feedback_intents_accuracy": accuracy(*zip(*inside)),
        "other_intents_accuracy": accuracy(*zip(*outside)),
        "test_accuracy": accuracy([s["label"] for s in test], predicted),
    }


def adapt_one(name: str, deployed_dir: str, feedback: list[dict], options: dict) -> dict:
    """Adapt the deployed model with variant ``name``; its test predictions."""
    train, test, _ = load_setting(
        Path(options["data_dir"]), options["per_label"], quick=options["quick"]
    )
    use_replay, anchor_weight = VARIANTS[name]
    model = kgmm.FusedModel.from_pretrained(deployed_dir)
    started = time.perf_counter()
    result = kgmm.adapt(
        model,
        feedback,
        TASK,
        replay=train if use_replay else None,
        steps=options["steps"],
        learning_rate=options["learning_rate"],
        learning_rates={"heads.*": options["head_learning_rate"]},
        anchor_weight=anchor_weight,
        replay_ratio=options["replay_ratio"],
        batch_size=options["batch_size"],
        bf16="auto",
    )
    return {
        "variant": name,
        "replay": use_replay,
        "anchor_weight": anchor_weight,
        "adapt_seconds": time.perf_counter() - started,
        "steps": result.steps,
        "final_loss": result.losses[-1],
        "weight_distance": result.weight_distance,
        "relative_change": result.relative_change,
        "test_predictions": model.predict(test, task=TASK, batch_size=128),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=REPO / "results" / "online_adaptation.json")
    parser.add_argument("--per-label", type=int, default=10)
    parser.add_argument("--epochs", type=float, default=None, help="default 5 (quick: 2)")
    parser.add_argument("--intents", type=int, default=None, help="default 5 (quick: 2)")
    parser.add_argument("--per-intent", type=int, default=None, help="default 8 (quick: 3)")
    parser.add_argument("--steps", type=int, default=None, help="default 30 (quick: 5)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--replay-ratio", type=float, default=0.5)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--head-learning-rate", type=float, default=1e-3)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument(
        "--deployed",
        type=Path,
        default=None,
        help="a saved model this setup trained on the same N-shot data (e.g. the distillation "
        "benchmark's teacher), adapted instead of training one",
    )
    parser.add_argument("--quick", action="store_true")
    arguments = parser.parse_args(argv)
    quick = arguments.quick
    options = {
        "data_dir": str(arguments.data_dir),
        "per_label": arguments.per_label,
        "quick": quick,
        "epochs": arguments.epochs or (2.0 if quick else 5.0),
        "pool_per_label": 4 if quick else 20,
        "steps": arguments.steps or (5 if quick else 30),
        "deployed": str(arguments.deployed) if arguments.deployed else None,
        "batch_size": arguments.batch_size,
        "replay_ratio": arguments.replay_ratio,
        "learning_rate": arguments.learning_rate,
        "head_learning_rate": arguments.head_learning_rate,
    }
    intents = arguments.intents or (2 if quick else 5)
    per_intent = arguments.per_intent or (3 if quick else 8)
    _, test, _ = load_setting(arguments.data_dir, arguments.per_label, quick=quick)
    with tempfile.TemporaryDirectory() as scratch:
        deployed_dir = str(Path(scratch) / "deployed")
        deployed = run_isolated(deploy, deployed_dir, options)
        worst, feedback, pool_accuracy = choose_feedback(
            deployed["pool"], deployed["pool_predictions"], intents, per_intent
        )
        runs = [
            run_isolated(adapt_one, name, deployed_dir, feedback, options)
            for name in arguments.variants
        ]
    before = split_accuracy(test, deployed["test_predictions"], worst)
    rows = []
    for run in runs:
        after = split_accuracy(test, run.pop("test_predictions"), worst)
        rows.append(
            {
                **{k: v for k, v in run.items() if k != "relative_change"},
                **{f"{k}_before": v for k, v in before.items()},
                **{f"{k}_after": v for k, v in after.items()},
                "other_intents_change_points": 100
                * (after["other_intents_accuracy"] - before["other_intents_accuracy"]),
                "relative_change": run["relative_change"],
            }
        )
    print(f"feedback intents: {worst} (pool accuracy {pool_accuracy})")
    print(
        format_table(
            rows,
            [
                "variant",
                "feedback_intents_accuracy_before",
                "feedback_intents_accuracy_after",
                "other_intents_accuracy_before",
                "other_intents_accuracy_after",
                "other_intents_change_points",
                "test_accuracy_after",
                "weight_distance",
                "adapt_seconds",
            ],
        )
    )
    summary = {
        "setting": "quick" if quick else f"{arguments.per_label}-shot",
        "feedback_intents": worst,
        "feedback_pool_accuracy": pool_accuracy,
        "feedback_samples": len(feedback),
        "feedback_misclassified": sum(
            guess != s["label"]
            for s, guess in zip(deployed["pool"], deployed["pool_predictions"])
            if s in feedback
        ),
        "deploy_wall_seconds": deployed["wall_seconds"],
        **options,
    }
    write_results(arguments.out, "online_adaptation", rows, **summary)
    return {"rows": rows, **summary}


if __name__ == "__main__":
    main()
