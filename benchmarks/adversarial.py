"""Adversarial training on BANKING77 (10 examples per intent): plain vs FGM vs PGD.

Each configuration trains the shared MiniLM + banking-graph model (``banking77_setup``) in
its own single-threaded process and reports

* clean test accuracy;
* accuracy on a character-noise copy of the same test utterances (``--noise-rate`` of the
  letters edited: QWERTY typos, deletions, insertions, transpositions, casing; fixed seed);
* accuracy under an embedding-space attack (L2 norm ``--attack-epsilon`` per utterance on
  its word-embedding vectors; one FGSM step, plus PGD with ``--attack-steps`` if > 1);
* training samples/s, the cost of the extra forward and backward passes, per wall-clock
  second and per CPU second of the training process (the latter holds on a busy machine).

To fit a shared 2-core CPU, training runs ``--epochs`` epochs and the test utterances are a
stratified sample of ``--test-per-intent`` per intent (0 = the whole 3,080-utterance test
set). ``--quick`` is a smoke run on 5 intents.

    python benchmarks/adversarial.py --out results/adversarial.json
    python benchmarks/adversarial.py --quick
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from banking77_setup import (
    DEFAULT_DATA,
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
from kgmm.data import noisy_samples
from kgmm.data.intents import few_shot
from kgmm.metrics import format_table
from kgmm.training import AdversarialTraining, embedding_attack_accuracy

NOISE_SEED = 0


def adversary(method: str, options: dict) -> list[AdversarialTraining]:
    if method == "plain":
        return []
    if method == "fgm":
        return [AdversarialTraining("fgm", epsilon=options["train_epsilon"])]
    return [
        AdversarialTraining(
            "pgd",
            epsilon=options["train_epsilon"],
            alpha=options["pgd_alpha"],
            steps=options["pgd_steps"],
        )
    ]


def run_method(method: str, options: dict) -> dict:
    """Train with ``method`` and measure; runs in its own process."""
    train, test, labels = load_setting(
        Path(options["data_dir"]), seed=options["seed"], quick=options["quick"]
    )
    if options["test_per_intent"] and not options["quick"]:
        test = few_shot(test, options["test_per_intent"], seed=options["seed"])
    model = build_model(labels, seed=options["seed"])
    with tempfile.TemporaryDirectory() as folder:
        args = training_arguments(Path(folder), options["epochs"], seed=options["seed"])
        trainer = kgmm.Trainer(
            model, {TASK: train}, args=args, callbacks=adversary(method, options)
        )
        started, cpu_started = time.perf_counter(), time.process_time()
        result = trainer.train()
        train_seconds = time.perf_counter() - started
        train_cpu_seconds = time.process_time() - cpu_started
    epsilon = options["attack_epsilon"]
    fgsm = embedding_attack_accuracy(model, test, TASK, epsilon, batch_size=64)
    row = {
        "method": method,
        "seed": options["seed"],
        "steps": result.step,
        "train_samples_per_second": len(train) * options["epochs"] / train_seconds,
        "train_samples_per_cpu_second": len(train) * options["epochs"] / train_cpu_seconds,
        "clean_accuracy": fgsm["accuracy"],
        "noisy_accuracy": test_accuracy(
            model, noisy_samples(test, options["noise_rate"], seed=NOISE_SEED)
        ),
        "fgsm_accuracy": fgsm["attacked_accuracy"],
        "test_utterances": len(test),
    }
    if options["attack_steps"] > 1:
        pgd = embedding_attack_accuracy(
            model, test, TASK, epsilon, steps=options["attack_steps"], batch_size=64
        )
        row["pgd_attack_accuracy"] = pgd["attacked_accuracy"]
    return row


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=REPO / "results" / "adversarial.json")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--methods", default="plain,fgm,pgd")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--test-per-intent", type=int, default=5)
    parser.add_argument("--train-epsilon", type=float, default=1.0)
    parser.add_argument("--pgd-alpha", type=float, default=0.5)
    parser.add_argument("--pgd-steps", type=int, default=2)
    parser.add_argument("--noise-rate", type=float, default=0.1)
    parser.add_argument("--attack-epsilon", type=float, default=0.5)
    parser.add_argument("--attack-steps", type=int, default=1)
    options = vars(parser.parse_args(argv))
    if options["quick"]:
        options["epochs"] = 1.0
    options["data_dir"] = str(options["data_dir"])
    out = options.pop("out")
    rows = [
        run_isolated(run_method, method, {**options, "seed": int(seed)})
        for seed in options["seeds"].split(",")
        for method in options["methods"].split(",")
    ]
    columns = [
        "method",
        "seed",
        "clean_accuracy",
        "noisy_accuracy",
        "fgsm_accuracy",
        "train_samples_per_second",
        "train_samples_per_cpu_second",
    ]
    print(format_table(rows, columns))
    write_results(out, "adversarial", rows, settings=options)
    return {"rows": rows, "settings": options}


if __name__ == "__main__":
    main()
