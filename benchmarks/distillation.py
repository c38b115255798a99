"""Knowledge distillation on BANKING77: a 6-layer MiniLM teacher into a 3-layer student.

The teacher (the packaged MiniLM, 6 layers, + fusion + intent head) trains on N utterances
per intent; the student (the first ``--student-layers`` layers of the same MiniLM, same
fusion, graph and head) trains on the same data for the same epochs, once alone and once
with :class:`kgmm.training.Distillation` (KL on the logits at temperature T, weight 1, added
to the cross-entropy), and, with ``--transfer-per-label K``, once more with the teacher also
labelling a transfer set: K further ``train.csv`` utterances per intent whose labels are
dropped and replaced by the teacher's prediction (its soft labels enter through the KL term),
the setting distillation is made for: a teacher that has seen few labels passes on what it
knows about unlabelled text. Reported: official test-set accuracy, inference speed (``predict``
over the test set, batch 64, one thread) and parameter counts. Each configuration runs in
its own process (``run_isolated``), one after another.

    python benchmarks/distillation.py --out results/distillation.json
    python benchmarks/distillation.py --teacher runs/teacher --transfer-per-label 30
    python benchmarks/distillation.py --quick
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
    training_arguments,
    write_results,
)

import kgmm
from kgmm.data.intents import few_shot, load_intent_csv
from kgmm.metrics import accuracy, format_table
from kgmm.training import Distillation

SPEED_BATCH = 64


def measure(model: kgmm.FusedModel, test: list[dict]) -> dict:
    """Test accuracy and prediction speed (batch 64) of ``model``."""
    started = time.perf_counter()
    predicted = model.predict(test, task=TASK, batch_size=SPEED_BATCH)
    seconds = time.perf_counter() - started
    return {
        "test_accuracy": accuracy([s["label"] for s in test], predicted),
        "inference_samples_per_second": len(test) / seconds,
        "parameters": sum(p.numel() for p in model.parameters()),
        "text_encoder_parameters": sum(p.numel() for p in model.encoders["text"].parameters()),
    }


def transfer_set(teacher: kgmm.FusedModel, train: list[dict], options: dict) -> list[dict]:
    """``transfer_per_label`` unused ``train.csv`` utterances per intent, labelled by
    ``teacher`` (their own labels are dropped: only the text is taken)."""
    used = {s["text"] for s in train}
    labels = {s["label"] for s in train}
    rest = [
        s
        for s in load_intent_csv(Path(options["data_dir"]) / "train.csv")
        if s["text"] not in used and s["label"] in labels
    ]
    texts = [{"text": s["text"]} for s in few_shot(rest, options["transfer_per_label"], seed=2)]
    predicted = teacher.predict(texts, task=TASK, batch_size=SPEED_BATCH)
    return [{**s, "label": label} for s, label in zip(texts, predicted)]


def train_one(
    name: str,
    layers: int | None,
    teacher_dir: str | None,
    save_to: str | None,
    options: dict,
    transfer: bool = False,
) -> dict:
    """Train one configuration and measure it; ``teacher_dir`` switches distillation on,
    ``transfer`` adds the teacher-labelled transfer set to the training data."""
    train, test, labels = load_setting(
        Path(options["data_dir"]), options["per_label"], quick=options["quick"]
    )
    text = {"config_overrides": {"num_hidden_layers": layers}} if layers else None
    model = build_model(labels, text=text)
    callbacks = []
    if teacher_dir is not None:
        teacher = kgmm.FusedModel.from_pretrained(teacher_dir)
        if transfer:
            train = train + transfer_set(teacher, train, options)
        callbacks.append(Distillation(teacher, temperature=options["temperature"], weight=1.0))
    with tempfile.TemporaryDirectory() as scratch:
        args = training_arguments(Path(scratch), options["epochs"])
        started = time.perf_counter()
        result = kgmm.Trainer(model, {TASK: train}, args=args, callbacks=callbacks).train()
        train_seconds = time.perf_counter() - started
    if save_to is not None:
        model.save_pretrained(save_to)
    return {
        "model": name,
        "text_layers": len(model.encoders["text"].model.encoder.layer),
        "distilled": teacher_dir is not None,
        "train_utterances": len(train),
        "steps": result.step,
        "train_seconds": train_seconds,
        **measure(model, test),
    }


def measure_saved(name: str, folder: str, options: dict) -> dict:
    """Measure a saved teacher without training it again."""
    _, test, _ = load_setting(
        Path(options["data_dir"]), options["per_label"], quick=options["quick"]
    )
    model = kgmm.FusedModel.from_pretrained(folder)
    return {
        "model": name,
        "text_layers": len(model.encoders["text"].model.encoder.layer),
        "distilled": False,
        "reused_from": folder,
        **measure(model, test),
    }


def inference_speed(teacher_dir: str, layers: int, options: dict, rounds: int = 3) -> dict:
    """Median test-set ``predict`` samples/s (batch 64) of the teacher and of a student of the
    same setup with ``layers`` text layers (speed does not depend on trained weights), the
    two alternating ``rounds`` times in one process so machine load hits both alike."""
    _, test, labels = load_setting(Path(options["data_dir"]), options["per_label"])
    models = {
        "teacher": kgmm.FusedModel.from_pretrained(teacher_dir),
        "student": build_model(labels, text={"config_overrides": {"num_hidden_layers": layers}}),
    }
    speeds: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            started = time.perf_counter()
            model.predict(test, task=TASK, batch_size=SPEED_BATCH)
            speeds[name].append(len(test) / (time.perf_counter() - started))
    medians = {name: sorted(values)[len(values) // 2] for name, values in speeds.items()}
    return {
        "rounds": speeds,
        "median_samples_per_second": medians,
        "student_speedup": medians["student"] / medians["teacher"],
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=REPO / "results" / "distillation.json")
    parser.add_argument("--per-label", type=int, default=10)
    parser.add_argument("--epochs", type=float, default=None, help="default 5 (quick: 2)")
    parser.add_argument("--student-layers", type=int, default=3)
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--save-teacher", type=Path, default=None, help="keep the teacher here")
    parser.add_argument(
        "--teacher", type=Path, default=None, help="a teacher this script saved: not retrained"
    )
    parser.add_argument(
        "--transfer-per-label",
        type=int,
        default=0,
        help="also distil with K teacher-labelled train.csv utterances per intent",
    )
    parser.add_argument(
        "--only", nargs="+", default=None, help="run only these rows (teacher, student, ...)"
    )
    parser.add_argument(
        "--speed-only",
        action="store_true",
        help="with --teacher: only compare teacher and student inference speed",
    )
    parser.add_argument("--quick", action="store_true")
    arguments = parser.parse_args(argv)
    epochs = arguments.epochs or (2.0 if arguments.quick else 5.0)
    load_setting(arguments.data_dir, quick=True)  # fail early on a missing data folder
    options = {
        "data_dir": str(arguments.data_dir),
        "per_label": arguments.per_label,
        "quick": arguments.quick,
        "epochs": epochs,
        "temperature": arguments.temperature,
        "transfer_per_label": arguments.transfer_per_label,
    }
    layers = arguments.student_layers
    if arguments.speed_only:
        if arguments.teacher is None:
            raise kgmm.ConfigError("--speed-only needs --teacher (a saved teacher folder)")
        speed = run_isolated(inference_speed, str(arguments.teacher), layers, options)
        print(f"inference samples/s (batch {SPEED_BATCH}): {speed['median_samples_per_second']}")
        print(f"student speed-up: {speed['student_speedup']:.2f}x")
        write_results(arguments.out, "distillation_speed", [speed], **options)
        return speed
    with tempfile.TemporaryDirectory() as scratch:
        teacher_dir = str(arguments.teacher or arguments.save_teacher or Path(scratch) / "teacher")
        configs = {
            "teacher": (train_one, "teacher", None, None, teacher_dir, options)
            if arguments.teacher is None
            else (measure_saved, "teacher", teacher_dir, options),
            "student": (train_one, "student", layers, None, None, options),
            "student + distillation": (
                train_one,
                "student + distillation",
                layers,
                teacher_dir,
                None,
                options,
            ),
        }
        if arguments.transfer_per_label:
            name = f"student + distillation + {arguments.transfer_per_label}/intent transfer"
            configs[name] = (train_one, name, layers, teacher_dir, None, options, True)
        chosen = [
            c for c in configs if arguments.only is None or c in arguments.only or c == "teacher"
        ]
        rows = [run_isolated(*configs[name]) for name in chosen]
    teacher_speed = rows[0]["inference_samples_per_second"]
    for row in rows:
        row["speedup_vs_teacher"] = row["inference_samples_per_second"] / teacher_speed
    print(
        format_table(
            rows,
            [
                "model",
                "text_layers",
                "test_accuracy",
                "inference_samples_per_second",
                "speedup_vs_teacher",
                "parameters",
                "train_seconds",
                "wall_seconds",
            ],
        )
    )
    summary = {
        "setting": "quick" if arguments.quick else f"{arguments.per_label}-shot",
        "epochs": epochs,
        "temperature": arguments.temperature,
        "distillation_weight": 1.0,
        "speed_batch_size": SPEED_BATCH,
        "threads": 1,
    }
    write_results(arguments.out, "distillation", rows, **summary)
    return {"rows": rows, **summary}


if __name__ == "__main__":
    main()
