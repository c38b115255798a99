"""Hetionet-family graphs: a node table (``id``, ``name``, ``kind``) plus edge tables.

The format of Hetionet v1.0's ``hetionet-v1.0-nodes.tsv`` and of the triple files derived
from it (PharmacotherapyDB, HSDN): tab-separated, one header line; edge files have at least
``head_id``, ``relation`` and ``tail_id`` columns and may name their end points with
``head_name``/``head_kind`` and ``tail_name``/``tail_kind`` (other columns are ignored).
Hetionet ids (``Disease::DOID:10652``) become entity keys, names become entity names and
kinds entity types.
"""

from __future__ import annotations

import csv
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path

from kgmm.errors import GraphFormatError
from kgmm.graph import KnowledgeGraph
from kgmm.graph.entity import EntityRecord

NODE_COLUMNS = ("id", "name", "kind")
EDGE_COLUMNS = ("head_id", "relation", "tail_id")
NAMED_END_COLUMNS = ("head_name", "head_kind", "tail_name", "tail_kind")


def load_hetionet_graph(
    nodes_path: str | Path,
    edge_files: Sequence[str | Path] = (),
    kinds: Collection[str] | None = None,
) -> KnowledgeGraph:
    """A :class:`KnowledgeGraph` of the nodes of ``kinds`` (all kinds when ``None``) and the
    edges between them.

    An edge end point missing from the node table is added from the edge file's
    ``*_name``/``*_kind`` columns (HSDN has symptoms Hetionet lacks), and is an error when the
    file has no such columns; an edge touching a node of a kind that was left out is skipped.
    """
    kept: dict[str, EntityRecord] = {}
    known: set[str] = set()
    for line, row in _rows(nodes_path, NODE_COLUMNS):
        key = row["id"]
        if not key or not row["name"]:
            raise GraphFormatError(f"{nodes_path}:{line}: empty id or name")
        known.add(key)
        if kinds is None or row["kind"] in kinds:
            kept[key] = EntityRecord(key=key, name=row["name"], type=row["kind"])
    if not kept:
        raise GraphFormatError(f"{nodes_path}: no node of kinds {sorted(kinds or [])}")
    triples = []
    for path in edge_files:
        for line, row in _rows(path, EDGE_COLUMNS, optional=NAMED_END_COLUMNS):
            head, relation, tail = (row[column] for column in EDGE_COLUMNS)
            for end, key in (("head", head), ("tail", tail)):
                if key in known:
                    continue
                name, kind = row.get(f"{end}_name"), row.get(f"{end}_kind")
                if not name or not kind:
                    raise GraphFormatError(
                        f"{path}:{line}: id {key!r} is not in the node table {nodes_path} "
                        f"and the edge file gives no {end}_name/{end}_kind for it"
                    )
                known.add(key)
                if kinds is None or kind in kinds:
                    kept[key] = EntityRecord(key=key, name=name, type=kind)
            if not relation:
                raise GraphFormatError(f"{path}:{line}: empty relation")
            if head in kept and tail in kept:
                triples.append((head, relation, tail))
    return KnowledgeGraph.from_triples(triples, kept.values())


def _rows(
    path: str | Path, columns: Sequence[str], optional: Sequence[str] = ()
) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line number, row)`` of a tab-separated file whose header has ``columns`` (and
    perhaps some of ``optional``)."""
    path = Path(path)
    if not path.is_file():
        raise GraphFormatError(f"{path}: no such file")
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None:
            raise GraphFormatError(f"{path}: empty file")
        missing = [column for column in columns if column not in header]
        if missing:
            raise GraphFormatError(
                f"{path}:1: header lacks columns {missing} (expected {list(columns)}, got {header})"
            )
        columns = list(columns) + [column for column in optional if column in header]
        index = [header.index(column) for column in columns]
        for number, cells in enumerate(reader, start=2):
            if not cells:
                continue
            if len(cells) != len(header):
                raise GraphFormatError(
                    f"{path}:{number}: expected {len(header)} tab-separated columns, "
                    f"got {len(cells)}"
                )
            yield number, {column: cells[i].strip() for column, i in zip(columns, index)}
