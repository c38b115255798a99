"""KGCN/RippleNet-family recommendation data (Wang et al. 2018-2019) and the KGCN protocol.

The family is published in two forms, both read here into a :class:`KGRecData`:

* **raw release** (:func:`load_kgrec_raw`): a rating log (``user_artists.dat``,
  ``ratings.csv``, ``BX-Book-Ratings.csv``: user, item[, rating], optional header), an item
  map (``item_index2entity_id.txt``: raw item id -> KG entity, row order = item index) and
  ``kg.txt`` (head, relation, tail over entity ids). Only mapped items are kept.
* **preprocessed** (:func:`load_kgrec_preprocessed`): ``ratings_final.txt`` (user, item,
  label 0/1, negatives already drawn) and ``kg_final.txt`` (integer triples) where item ``i``
  is entity ``i``.

:func:`kgcn_protocol` turns either into the KGCN train/valid/test rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kgmm.errors import DataError
from kgmm.graph import KnowledgeGraph

RAW_ITEM_MAP = "item_index2entity_id.txt"
RAW_KG = "kg.txt"
RAW_RATING_FILES = ("user_artists.dat", "ratings.csv", "ratings.dat", "BX-Book-Ratings.csv")
FINAL_RATINGS = "ratings_final.txt"
FINAL_KG = "kg_final.txt"
DELIMITERS = ("\t", "::", ";", ",")


@dataclass
class KGRecData:
    """Interactions and the item knowledge graph.

    ``ratings`` is ``[N, 3]`` int64 rows ``(user, item, label)``. With
    ``negatives_included`` the label-0 rows are the protocol's negatives (preprocessed
    form); otherwise label 1 is a positive and label 0 a rating below the threshold, which
    :func:`kgcn_protocol` never draws as a negative and then drops. ``item_entities[i]`` is
    item ``i``'s entity id in ``kg`` (every item is an entity, with or without triples).
    """

    ratings: np.ndarray
    num_users: int
    num_items: int
    kg: KnowledgeGraph
    item_entities: list[int]
    negatives_included: bool


@dataclass
class KGCNSplits:
    """``[n, 3]`` rows ``(user, item, label)`` of each split."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray


def load_kgrec(folder: str | Path) -> KGRecData:
    """Either form, chosen by the files in ``folder`` (preprocessed when both are there)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: recommendation data folder not found")
    if (folder / FINAL_RATINGS).is_file():
        return load_kgrec_preprocessed(folder / FINAL_RATINGS, folder / FINAL_KG)
    ratings = next((folder / n for n in RAW_RATING_FILES if (folder / n).is_file()), None)
    if ratings is None:
        raise DataError(
            f"{folder}: no {FINAL_RATINGS} (preprocessed form) and none of "
            f"{', '.join(RAW_RATING_FILES)} (raw release)"
        )
    return load_kgrec_raw(ratings, folder / RAW_ITEM_MAP, folder / RAW_KG)


def load_kgrec_raw(
    ratings: str | Path, item_map: str | Path, kg: str | Path, threshold: float = 0.0
) -> KGRecData:
    """The raw release: rows with ``rating >= threshold`` (or no rating column) are positives.

    Users are numbered in order of first appearance, items in item-map row order; log rows
    of unmapped items are dropped. The delimiter (tab, ``::``, ``;`` or comma) and a header
    line are detected from the rating file.
    """
    item_keys = _read_item_map(Path(item_map))
    item_index = {raw: index for index, (raw, _) in enumerate(item_keys)}
    users: dict[str, int] = {}
    rows = []
    path = Path(ratings)
    for number, fields in _rating_rows(path):
        item = item_index.get(fields[1])
        if item is None:
            continue
        label = 1
        if len(fields) > 2:
            try:
                label = int(float(fields[2]) >= threshold)
            except ValueError:
                raise DataError(f"{path}:{number}: rating {fields[2]!r} is not a number") from None
        rows.append((users.setdefault(fields[0], len(users)), item, label))
    if not rows:
        raise DataError(f"{path}: no rating row names an item of {item_map}")
    graph, entities = _build_graph(Path(kg), [entity for _, entity in item_keys])
    return KGRecData(
        ratings=_unique_pairs(rows),
        num_users=len(users),
        num_items=len(item_keys),
        kg=graph,
        item_entities=entities,
        negatives_included=False,
    )


def load_kgrec_preprocessed(ratings: str | Path, kg: str | Path) -> KGRecData:
    """``ratings_final.txt`` (user, item, label) and ``kg_final.txt``; item ``i`` = entity ``i``."""
    path = Path(ratings)
    rows = []
    for number, fields in _lines(path):
        if len(fields) != 3:
            raise DataError(f"{path}:{number}: expected 3 fields (user, item, label)")
        try:
            user, item, label = (int(value) for value in fields)
        except ValueError:
            raise DataError(f"{path}:{number}: user, item and label must be integers") from None
        if user < 0 or item < 0 or label not in (0, 1):
            raise DataError(f"{path}:{number}: expected ids >= 0 and a 0/1 label")
        rows.append((user, item, label))
    if not rows:
        raise DataError(f"{path}: no rating rows")
    array = _unique_pairs(rows)
    num_items = int(array[:, 1].max()) + 1
    graph, entities = _build_graph(Path(kg), [str(i) for i in range(num_items)])
    return KGRecData(
        ratings=array,
        num_users=int(array[:, 0].max()) + 1,
        num_items=num_items,
        kg=graph,
        item_entities=entities,
        negatives_included=True,
    )


def kgcn_protocol(
    data: KGRecData, seed: int = 555, ratios: tuple[float, float, float] = (0.6, 0.2, 0.2)
) -> KGCNSplits:
    """KGCN's preparation: every positive kept; unless the data holds negatives already, as
    many negatives per user as positives, drawn without replacement from the items the user
    never interacted with; then a random ``ratios`` split of the rows (seeded).

    Each (user, item) pair is one row, so no test positive is a training row.
    """
    if len(ratios) != 3 or min(ratios) < 0 or not np.isclose(sum(ratios), 1.0):
        raise DataError(f"ratios must be three fractions summing to 1, got {ratios}")
    rng = np.random.default_rng(seed)
    rows = data.ratings if data.negatives_included else _with_negatives(data, rng)
    order = rng.permutation(len(rows))
    valid_size = int(len(rows) * ratios[1])
    test_size = int(len(rows) * ratios[2])
    train_size = len(rows) - valid_size - test_size
    return KGCNSplits(
        train=rows[np.sort(order[:train_size])],
        valid=rows[np.sort(order[train_size : train_size + valid_size])],
        test=rows[np.sort(order[train_size + valid_size :])],
    )


def _with_negatives(data: KGRecData, rng: np.random.Generator) -> np.ndarray:
    ratings = data.ratings
    positives = ratings[ratings[:, 2] == 1]
    rows = [positives]
    for user in np.unique(positives[:, 0]):
        interacted = np.zeros(data.num_items, dtype=bool)
        interacted[ratings[ratings[:, 0] == user, 1]] = True
        candidates = np.flatnonzero(~interacted)
        count = min(int((positives[:, 0] == user).sum()), len(candidates))
        drawn = rng.choice(candidates, size=count, replace=False)
        rows.append(np.stack([np.full(count, user), drawn, np.zeros(count, np.int64)], axis=1))
    merged = np.concatenate(rows).astype(np.int64)
    return merged[np.lexsort((merged[:, 1], merged[:, 0]))]


def _text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, stripped line)`` of the non-blank lines."""
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield number, line.strip()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None


def _lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    """``(line number, whitespace-separated fields)`` of the non-blank lines."""
    for number, line in _text_lines(path):
        yield number, line.split()


def _rating_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Fields of each rating line; the delimiter comes from the first line, which is skipped
    when it is a header (a non-numeric rating, or a non-numeric user in a 2-column file)."""
    delimiter = None
    for number, line in _text_lines(path):
        first = delimiter is None
        if first:
            delimiter = next((d for d in DELIMITERS if d in line), None)
            if delimiter is None:
                raise DataError(f"{path}:{number}: no tab, '::', ';' or ',' between fields")
        fields = [field.strip().strip('"') for field in line.split(delimiter)]
        if first and not _is_number(fields[2] if len(fields) > 2 else fields[0]):
            continue
        if len(fields) < 2 or not fields[0] or not fields[1]:
            raise DataError(f"{path}:{number}: expected user{delimiter}item[{delimiter}rating]")
        yield number, fields


def _read_item_map(path: Path) -> list[tuple[str, str]]:
    pairs = []
    for number, fields in _lines(path):
        if len(fields) != 2:
            raise DataError(f"{path}:{number}: expected 2 fields (item id, entity id)")
        pairs.append((fields[0], fields[1]))
    if not pairs:
        raise DataError(f"{path}: the item map is empty")
    duplicates = len(pairs) - len({raw for raw, _ in pairs})
    if duplicates:
        raise DataError(f"{path}: {duplicates} item ids are listed twice")
    return pairs


def _build_graph(path: Path, item_keys: list[str]) -> tuple[KnowledgeGraph, list[int]]:
    """The KG with every item entity in it (first, in item order), and each item's id."""
    keys: dict[str, int] = {}
    for key in item_keys:
        keys.setdefault(key, len(keys))
    relations: dict[str, int] = {}
    triples = []
    for number, fields in _lines(path):
        if len(fields) != 3:
            raise DataError(f"{path}:{number}: expected 3 fields (head, relation, tail)")
        head, relation, tail = fields
        triples.append(
            (
                keys.setdefault(head, len(keys)),
                relations.setdefault(relation, len(relations)),
                keys.setdefault(tail, len(keys)),
            )
        )
    graph = KnowledgeGraph(list(keys), list(relations), np.asarray(triples, dtype=np.int64))
    return graph, [keys[key] for key in item_keys]


def _unique_pairs(rows: list[tuple[int, int, int]]) -> np.ndarray:
    """One row per (user, item) in first-seen order, labelled 1 if any of its rows is: the
    protocol treats interactions as sets, and a repeated pair could sit in two splits."""
    labels: dict[tuple[int, int], int] = {}
    for user, item, label in rows:
        labels[user, item] = max(label, labels.get((user, item), 0))
    return np.asarray([(u, i, y) for (u, i), y in labels.items()], dtype=np.int64)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
