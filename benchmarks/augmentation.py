"""Data augmentation on BANKING77 with 10 examples per intent.

Trains the shared MiniLM + banking-graph model (``banking77_setup``) in its own
single-threaded process per configuration, augmenting each training utterance with
probability ``--probability`` each time its batch is built:

* ``none``: no augmentation;
* ``alias``: knowledge-aware replacement: each mention linked in ``graphs/banking.tsv``
  becomes another alias of the same entity with probability ``--alias-rate``;
* ``eda``: random deletion (``--deletion-rate`` per word) and swap (``--swap-rate``);
* ``both``: alias replacement, then deletion and swap.

Reports test accuracy on the official test set (``--test-per-intent 0``) and how many
training utterances have a linked mention. ``--quick`` is a smoke run on 5 intents.

    python benchmarks/augmentation.py --out results/augmentation.json
    python benchmarks/augmentation.py --quick
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from banking77_setup import (
    DEFAULT_DATA,
    GRAPH,
    REPO,
    TASK,
    build_model,
    load_setting,
    run_isolated,
    test_accuracy,
    training_arguments,
    write_results,
)

import kgmm
from kgmm.data import TextAugmenter
from kgmm.data.intents import few_shot
from kgmm.metrics import format_table
from kgmm.training import Augmentation

CONFIGS = ("none", "alias", "eda", "both")


def augmenter(config: str, kg: kgmm.KnowledgeGraph, options: dict) -> TextAugmenter:
    alias = options["alias_rate"] if config in ("alias", "both") else 0.0
    eda = config in ("eda", "both")
    return TextAugmenter(
        kg,
        alias_rate=alias,
        deletion_rate=options["deletion_rate"] if eda else 0.0,
        swap_rate=options["swap_rate"] if eda else 0.0,
    )


def run_config(config: str, options: dict) -> dict:
    """Train with augmentation ``config`` and measure; runs in its own process."""
    train, test, labels = load_setting(
        Path(options["data_dir"]), seed=options["seed"], quick=options["quick"]
    )
    if options["test_per_intent"] and not options["quick"]:
        test = few_shot(test, options["test_per_intent"], seed=options["seed"])
    model = build_model(labels, seed=options["seed"])
    callbacks = []
    if config != "none":
        text_augmenter = augmenter(config, model.kg, options)
        callbacks.append(Augmentation(text_augmenter, probability=options["probability"]))
    with tempfile.TemporaryDirectory() as folder:
        args = training_arguments(Path(folder), options["epochs"], seed=options["seed"])
        trainer = kgmm.Trainer(model, {TASK: train}, args=args, callbacks=callbacks)
        started = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - started
    return {
        "augmentation": config,
        "seed": options["seed"],
        "test_accuracy": test_accuracy(model, test),
        "test_utterances": len(test),
        "train_seconds": train_seconds,
    }


def linked_share(data_dir: Path, seed: int, quick: bool) -> dict:
    """How many training utterances have a linked mention with another surface form."""
    train, _, _ = load_setting(data_dir, seed=seed, quick=quick)
    kg = kgmm.KnowledgeGraph.load(GRAPH)
    linker = kgmm.EntityLinker(kg)
    replaceable = TextAugmenter(kg, alias_rate=1.0)
    linked = sum(bool(linker.link(s["text"])) for s in train)
    changed = sum(
        replaceable.replace_mentions(s["text"], np.random.default_rng(i)) != s["text"]
        for i, s in enumerate(train)
    )
    return {
        "train_utterances": len(train),
        "with_linked_mention": linked,
        "alias_replaceable": changed,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=REPO / "results" / "augmentation.json")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--test-per-intent", type=int, default=0)
    parser.add_argument("--probability", type=float, default=0.5)
    parser.add_argument("--alias-rate", type=float, default=0.5)
    parser.add_argument("--deletion-rate", type=float, default=0.1)
    parser.add_argument("--swap-rate", type=float, default=0.1)
    options = vars(parser.parse_args(argv))
    if options["quick"]:
        options["epochs"] = 1.0
    options["data_dir"] = str(options["data_dir"])
    out = options.pop("out")
    linking = linked_share(Path(options["data_dir"]), 0, options["quick"])
    print(f"training utterances with a linked mention: {linking}")
    rows = [
        run_isolated(run_config, config, {**options, "seed": int(seed)})
        for seed in options["seeds"].split(",")
        for config in options["configs"].split(",")
    ]
    columns = ["augmentation", "seed", "test_accuracy", "train_seconds", "wall_seconds"]
    print(format_table(rows, columns))
    write_results(out, "augmentation", rows, settings=options, linking=linking)
    return {"rows": rows, "linking": linking, "settings": options}


if __name__ == "__main__":
    main()
