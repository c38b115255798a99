"""``kgmm predict CHECKPOINT --data FILE --task T``: a prediction per sample, as JSON Lines."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from kgmm.cli.inference_model import add_inference_arguments, load_for_inference
from kgmm.errors import DataError

PREDICTION_FIELD = "prediction"


def register(commands: argparse._SubParsersAction) -> None:
    predict = commands.add_parser(
        "predict", help="write each sample of a manifest with the model's prediction"
    )
    add_inference_arguments(predict)
    predict.add_argument("--data", required=True, help="JSONL manifest of samples")
    predict.add_argument("--out", help="JSONL file to write (default: standard output)")
    predict.set_defaults(run=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    """Each sample of ``--data`` with a ``prediction`` field added, in the manifest's order;
    the count, time and rate go to standard error."""
    from kgmm.data import read_manifest

    samples = read_manifest(args.data)
    for index, sample in enumerate(samples, start=1):
        if PREDICTION_FIELD in sample:
            raise DataError(
                f"{args.data}: sample {index} already has a {PREDICTION_FIELD!r} field, "
                "which the output would overwrite"
            )
    model, bf16, _ = load_for_inference(args)
    start = time.perf_counter()
    predictions = model.predict(samples, args.task, batch_size=args.batch_size, bf16=bf16)
    seconds = time.perf_counter() - start
    lines = "".join(
        json.dumps({**sample, PREDICTION_FIELD: prediction}, ensure_ascii=False) + "\n"
        for sample, prediction in zip(samples, predictions, strict=True)
    )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(lines, encoding="utf-8")
    else:
        sys.stdout.write(lines)
    print(
        f"kgmm: {len(samples)} predictions in {seconds:.1f} s "
        f"({len(samples) / seconds:.1f} samples/s, precision {args.precision})",
        file=sys.stderr,
    )
    return 0
