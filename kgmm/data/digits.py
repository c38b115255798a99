"""Loaders for two public digit formats: spoken digits (FSDD) and 8x8 handwritten digits (UCI).

* Free Spoken Digit Dataset: WAV files named ``{digit}_{speaker}_{index}.wav``; the official
  split puts recordings with index 0-4 in the test set and the rest in the training set.
* UCI optical digits as scikit-learn ships them (``digits.csv`` or ``digits.csv.gz``): no
  header, 65 integers a row, 64 pixel counts 0-16 of an 8x8 image in row-major order, then
  the class label.
"""

from __future__ import annotations

import csv
import gzip
import re
from pathlib import Path

import numpy as np

from kgmm.errors import DataError

FSDD_NAME = re.compile(r"^(?P<digit>\d)_(?P<speaker>[A-Za-z0-9]+)_(?P<index>\d+)\.wav$")
FSDD_TEST_INDICES = range(5)
IMAGE_SIDE = 8
PIXEL_MAX = 16


def load_fsdd(folder: str | Path) -> tuple[list[dict], list[dict]]:
    """``(train, test)`` sample dicts ``{"audio", "digit", "speaker", "index"}`` of an FSDD
    folder (the ``recordings/`` folder or one that holds it), sorted by file name.

    Raises :class:`DataError` for a missing folder, a folder without WAV files, or a WAV file
    whose name is not ``{digit}_{speaker}_{index}.wav``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"FSDD folder {folder} does not exist")
    recordings = folder / "recordings" if (folder / "recordings").is_dir() else folder
    paths = sorted(recordings.glob("*.wav"))
    if not paths:
        raise DataError(f"{recordings}: no .wav recordings found")
    train, test = [], []
    for path in paths:
        match = FSDD_NAME.match(path.name)
        if match is None:
            raise DataError(
                f"{path}: expected a file name {{digit}}_{{speaker}}_{{index}}.wav "
                "(for example 3_jackson_12.wav)"
            )
        sample = {
            "audio": str(path),
            "digit": int(match["digit"]),
            "speaker": match["speaker"],
            "index": int(match["index"]),
        }
        (test if sample["index"] in FSDD_TEST_INDICES else train).append(sample)
    return train, test


def load_digit_images(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` of a UCI digits CSV (``.csv`` or ``.csv.gz``): images as float32
    ``[N, 8, 8]`` scaled from the 0-16 pixel counts to [0, 1], labels as int64 ``[N]``.

    Raises :class:`DataError` naming the file and line of a malformed row.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"digit images file {path} does not exist")
    opener = gzip.open if path.suffix == ".gz" else open
    pixels, labels = [], []
    width = IMAGE_SIDE * IMAGE_SIDE + 1
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as handle:
            for number, row in enumerate(csv.reader(handle), start=1):
                if not row:
                    continue
                values = _row_integers(row, width, path, number)
                if any(not 0 <= v <= PIXEL_MAX for v in values[:-1]):
                    raise DataError(f"{path}:{number}: pixel values must be integers 0-{PIXEL_MAX}")
                pixels.append(values[:-1])
                labels.append(values[-1])
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read digit images ({error})") from None
    if not labels:
        raise DataError(f"{path}: no digit images found")
    images = np.asarray(pixels, dtype=np.float32).reshape(-1, IMAGE_SIDE, IMAGE_SIDE) / PIXEL_MAX
    return images, np.asarray(labels, dtype=np.int64)


def _row_integers(row: list[str], width: int, path: Path, number: int) -> list[int]:
    if len(row) != width:
        raise DataError(
            f"{path}:{number}: expected {width} comma-separated integers "
            f"({width - 1} pixels and a label), got {len(row)}"
        )
    try:
        return [int(value) for value in row]
    except ValueError:
        raise DataError(f"{path}:{number}: expected integers, got {','.join(row)[:60]!r}") from None
