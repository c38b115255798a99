"""Knowledge distillation on BANKING77: a 6-layer MiniLM teacher into a 3-layer student.

The teacher (the packaged MiniLM, 6 layers, + fusion + intent head) trains on N utterances
per intent; the student (the first ``--student-layers`` layers of the same MiniLM, same
fusion, graph and head) trains on the same data for the same epochs, once alone and once
with :class:`kgmm.training.Distillation` (KL on the logits at temperature T, weight 1, added
to the cross-entropy). Reported: official test-set accuracy, inference speed (``predict``
over the test set, batch 64, one thread) and parameter counts. Each configuration runs in
its own process (``run_isolated``), one after another.

    python benchmarks/distillation.py --out results/distillation.json
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


def train_one(
    name: str,
    layers: int | None,
    teacher_dir: str | None,
    save_to: str | None,
    options: dict,
) -> dict:
    """Train one configuration and measure it; ``teacher_dir`` switches distillation on."""
    train, test, labels = load_setting(
        Path(options["data_dir"]), options["per_label"], quick=options["quick"]
    )
    text = {"config_overrides": {"num_hidden_layers": layers}} if layers else None
    model = build_model(labels, text=text)
    callbacks = []
    if teacher_dir is not None:
        teacher = kgmm.FusedModel.from_pretrained(teacher_dir)
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
        "steps": result.step,
        "train_seconds": train_seconds,
        **measure(model, test),
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
    }
    layers = arguments.student_layers
    with tempfile.TemporaryDirectory() as scratch:
        teacher_dir = str(arguments.save_teacher or Path(scratch) / "teacher")
        rows = [
            run_isolated(train_one, "teacher", None, None, teacher_dir, options),
            run_isolated(train_one, "student", layers, None, None, options),
            run_isolated(train_one, "student + distillation", layers, teacher_dir, None, options),
        ]
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
