"""``kgmm predict CHECKPOINT --data FILE --task T``: a prediction per sample, as JSON Lines."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from kgmm.cli.inference_model import add_inference_arguments, load_for_inference, precision_used
from kgmm.errors import ConfigError, DataError

PREDICTION_FIELD = "prediction"


def register(commands: argparse._SubParsersAction) -> None:
    predict = commands.add_parser(
        "predict", help="write each sample of a manifest with the model's prediction"
    )
    add_inference_arguments(predict)
    predict.add_argument("--data", required=True, help="JSONL manifest of samples")
    predict.add_argument("--out", type=Path, help="JSONL file to write (default: standard output)")
    predict.set_defaults(run=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    """Each sample of ``--data`` with a ``prediction`` field added, in the manifest's order;
    the count, time and rate go to standard error."""
    from kgmm.data import read_manifest

    samples = read_manifest(args.data)
    for index, sample in enumerate(samples):
        if PREDICTION_FIELD in sample:
            line = _sample_lines(args.data)[index]
            raise DataError(
                f"{args.data}:{line}: the sample already has a {PREDICTION_FIELD!r} field, "
                "which the output would overwrite"
            )
    if args.out:  # fail before the model runs, not after
        _check_writable(args.out)
    model, bf16, device = load_for_inference(args)
    start = time.perf_counter()
    predictions = model.predict(samples, args.task, batch_size=args.batch_size, bf16=bf16)
    seconds = time.perf_counter() - start
    lines = "".join(
        json.dumps({**sample, PREDICTION_FIELD: prediction}, ensure_ascii=False) + "\n"
        for sample, prediction in zip(samples, predictions, strict=True)
    )
    if args.out:
        try:
            args.out.write_text(lines, encoding="utf-8")
        except OSError as error:
            raise ConfigError(f"--out {args.out}: cannot write ({error})") from None
    else:
        sys.stdout.write(lines)
    print(
        f"kgmm: {len(samples)} predictions in {seconds:.1f} s "
        f"({len(samples) / seconds:.1f} samples/s, precision {precision_used(args, device)})",
        file=sys.stderr,
    )
    return 0


def _sample_lines(path: str) -> list[int]:
    """The line number of each sample ``read_manifest`` returns (it skips blank lines)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [number for number, line in enumerate(lines, start=1) if line.strip()]


def _check_writable(path: Path) -> None:
    """Create ``path``'s folder; a ``ConfigError`` naming ``--out`` if it cannot be written."""
    if path.is_dir():
        raise ConfigError(f"--out {path}: is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"--out {path}: cannot create its folder ({error})") from None
