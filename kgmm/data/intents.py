"""Intent-classification data in CSV (BANKING77, CLINC150, HWU64 style) and few-shot sampling."""

from __future__ import annotations

import csv
import random
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from kgmm.errors import DataError

TEXT_COLUMNS = ("text", "utterance", "query", "sentence", "question")
LABEL_COLUMNS = ("label", "category", "intent", "class")


def load_intent_csv(
    path: str | Path, text_column: str | None = None, label_column: str | None = None
) -> list[dict]:
    """``[{"text", "label"}]`` from a CSV file with a header row.

    The text and label columns are detected from common names (text/utterance/query/...,
    label/category/intent/...) when not given. Quoted texts may span lines. A row with the
    wrong number of fields, an empty text or an empty label raises :class:`DataError` naming
    the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: intent CSV file not found")
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header:
            raise DataError(f"{path}: empty file; expected a header row such as 'text,label'")
        header = [name.strip() for name in header]
        text_index = _column(path, header, text_column, TEXT_COLUMNS, "text")
        label_index = _column(path, header, label_column, LABEL_COLUMNS, "label")
        samples = []
        line = reader.line_num
        for row in reader:
            if row:
                samples.append(_sample(path, line + 1, row, header, text_index, label_index))
            line = reader.line_num
    if not samples:
        raise DataError(f"{path}: no rows after the header")
    return samples


def _column(
    path: Path, header: list[str], given: str | None, candidates: Sequence[str], role: str
) -> int:
    lowered = [name.lower() for name in header]
    if given is not None:
        if given not in header:
            raise DataError(f"{path}: no {role} column {given!r}; the header has {header}")
        return header.index(given)
    for name in candidates:
        if name in lowered:
            return lowered.index(name)
    raise DataError(
        f"{path}: cannot find the {role} column in header {header}; name it one of "
        f"{list(candidates)} or pass {role}_column="
    )


def _sample(
    path: Path, line: int, row: list[str], header: list[str], text_index: int, label_index: int
) -> dict:
    if len(row) != len(header):
        raise DataError(
            f"{path}:{line}: expected {len(header)} comma-separated fields ({', '.join(header)}), "
            f"got {len(row)}"
        )
    text, label = row[text_index].strip(), row[label_index].strip()
    if not text:
        raise DataError(f"{path}:{line}: empty text in column {header[text_index]!r}")
    if not label:
        raise DataError(f"{path}:{line}: empty label in column {header[label_index]!r}")
    return {"text": text, "label": label}


def few_shot(samples: Sequence[dict], per_label: int, seed: int = 0) -> list[dict]:
    """``per_label`` samples of every label, drawn without replacement with ``seed``.

    The result keeps the input order. A label with fewer samples raises :class:`DataError`.
    """
    if per_label < 1:
        raise DataError(f"few_shot needs per_label >= 1, got {per_label}")
    by_label: dict[str, list[int]] = defaultdict(list)
    for index, sample in enumerate(samples):
        by_label[sample["label"]].append(index)
    short = {label: len(ids) for label, ids in by_label.items() if len(ids) < per_label}
    if short:
        raise DataError(f"few_shot({per_label}): these labels have fewer samples: {short}")
    rng = random.Random(seed)
    chosen = {i for label in sorted(by_label) for i in rng.sample(by_label[label], per_label)}
    return [samples[i] for i in sorted(chosen)]


def stratified_split(
    samples: Sequence[dict], fraction: float, seed: int = 0
) -> tuple[list[dict], list[dict]]:
    """``(rest, held_out)``: ``fraction`` of every label (at least one sample of a label
    that has two or more) held out with ``seed``; both keep the input order."""
    if not 0.0 < fraction < 1.0:
        raise DataError(f"held-out fraction must be in (0, 1), got {fraction}")
    by_label: dict[str, list[int]] = defaultdict(list)
    for index, sample in enumerate(samples):
        by_label[sample["label"]].append(index)
    rng = random.Random(seed)
    held = set()
    for label in sorted(by_label):
        ids = by_label[label]
        count = min(len(ids) - 1, max(1, round(fraction * len(ids))))
        held.update(rng.sample(ids, count))
    rest = [s for i, s in enumerate(samples) if i not in held]
    return rest, [s for i, s in enumerate(samples) if i in held]
