"""Readers for knowledge-graph files. Each returns a :class:`ParsedGraph` of strings.

Parsing is strict: the first malformed line raises :class:`GraphFormatError` naming the
file, the line and what was expected, before any graph object exists (nothing is
half-loaded).
"""

from __future__ import annotations

import csv
import json
import re
from array import array
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from kgmm.errors import GraphFormatError
from kgmm.graph.entity import EntityRecord

ALIAS_SEPARATOR = "|"

FORMATS_BY_SUFFIX = {
    ".tsv": "tsv",
    ".txt": "tsv",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".graphml": "graphml",
    ".gml": "gml",
    ".nt": "nt",
}

HEAD_COLUMNS = ("head", "subject", "source", "h", "s")
RELATION_COLUMNS = ("relation", "predicate", "rel", "r", "p", "label", "type")
TAIL_COLUMNS = ("tail", "object", "target", "t", "o")
ENTITY_KEY_COLUMNS = ("entity", "id", "key")


class ParsedGraph:
    """Triples and entity attributes read from files, interned to ids as they stream in.

    Interning while reading keeps a 5M-triple load at a few int arrays instead of millions
    of string tuples; nothing here is a :class:`KnowledgeGraph` until parsing finished.
    """

    def __init__(self) -> None:
        self.entity_ids: dict[str, int] = {}
        self.relation_ids: dict[str, int] = {}
        self.records: dict[str, EntityRecord] = {}
        self.literals: list[tuple[str, str, str]] = []
        self._triples = array("i")

    def entity(self, key: str) -> int:
        """The id of ``key``, adding it if new."""
        found = self.entity_ids.get(key)
        if found is None:
            found = self.entity_ids[key] = len(self.entity_ids)
        return found

    def add_triple(self, head: str, relation: str, tail: str) -> None:
        rel = self.relation_ids.get(relation)
        if rel is None:
            rel = self.relation_ids[relation] = len(self.relation_ids)
        self._triples.extend((self.entity(head), rel, self.entity(tail)))

    def add_record(self, record: EntityRecord) -> None:
        """Add or merge entity attributes (the entity exists from then on)."""
        self.entity(record.key)
        if record.key in self.records:
            self.records[record.key].update(record)
        else:
            self.records[record.key] = record

    @property
    def num_triples(self) -> int:
        return len(self._triples) // 3

    def triples(self) -> np.ndarray:
        """The triples as an ``[N, 3]`` int32 array of (head, relation, tail) ids."""
        return np.frombuffer(self._triples, dtype=np.int32).reshape(-1, 3).copy()


def detect_format(path: Path) -> str:
    """The format name for ``path`` from its suffix (``.gz`` is not supported)."""
    fmt = FORMATS_BY_SUFFIX.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(FORMATS_BY_SUFFIX))
        raise GraphFormatError(
            f"{path}: cannot tell the graph format from the suffix {path.suffix!r}; "
            f"use one of {known} or pass format=..."
        )
    return fmt


def split_aliases(value: object) -> list[str]:
    """Aliases from a ``|``-separated string or a list, stripped, empty ones dropped."""
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else str(value).split(ALIAS_SEPARATOR)
    return [str(a).strip() for a in items if str(a).strip()]


def _lines(path: Path, progress: bool = False) -> Iterator[tuple[int, str]]:
    """(line number, line without newline), each line decoded as UTF-8 on its own so a
    bad byte is reported at its line."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise GraphFormatError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise GraphFormatError(f"{path}: is a folder, expected a graph file") from None
    bar = _progress_bar(path) if progress and path.stat().st_size > PROGRESS_MIN_BYTES else None
    with handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise GraphFormatError(
                    f"{path}:{number}: not valid UTF-8 ({error.reason})"
                ) from None
            if number == 1 and line.startswith("\ufeff"):
                line = line[1:]
            if bar is not None and number % PROGRESS_EVERY == 0:
                bar.update(handle.tell() - bar.n)
            yield number, line.rstrip("\r\n")
    if bar is not None:
        bar.update(bar.total - bar.n)
        bar.close()


PROGRESS_EVERY = 100_000
PROGRESS_MIN_BYTES = 16 * 2**20


def _progress_bar(path: Path):
    from tqdm.auto import tqdm

    return tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=f"reading {path.name}")


def _rows(path: Path, delimiter: str, progress: bool = False) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of the non-blank lines of a delimited file."""
    if delimiter == "\t":
        # Plain split: TSV triple files carry no quoting, and this is the 5M-line hot path.
        for number, line in _lines(path, progress):
            if line.strip() and not line.startswith("#"):
                yield number, line.split("\t")
        return
    numbered = ((n, line) for n, line in _lines(path, progress) if line.strip())
    numbers: list[int] = []

    def feed() -> Iterator[str]:
        for number, line in numbered:
            numbers.append(number)
            yield line

    try:
        for fields in csv.reader(feed(), delimiter=delimiter):
            yield numbers[-1], fields
    except csv.Error as error:
        raise GraphFormatError(f"{path}:{numbers[-1] if numbers else 1}: {error}") from None


def _column(header: list[str], names: tuple[str, ...]) -> int | None:
    lowered = [h.strip().lower() for h in header]
    for name in names:
        if name in lowered:
            return lowered.index(name)
    return None


def _triple_columns(header: list[str]) -> tuple[int, int, int] | None:
    """Column indices of head, relation, tail if ``header`` is a header row."""
    columns = (
        _column(header, HEAD_COLUMNS),
        _column(header, RELATION_COLUMNS),
        _column(header, TAIL_COLUMNS),
    )
    if None in columns or len(set(columns)) < 3:
        return None
    return columns  # type: ignore[return-value]


def read_delimited(path: Path, delimiter: str, progress: bool = False) -> ParsedGraph:
    """Triples from a TSV/CSV file: ``head, relation, tail`` with an optional header."""
    parsed = ParsedGraph()
    kind = "tab-separated" if delimiter == "\t" else "comma-separated"
    columns, width, first = (0, 1, 2), 3, True
    for number, fields in _rows(path, delimiter, progress):
        if first:
            first = False
            header_columns = _triple_columns(fields)
            if header_columns is not None:
                columns, width = header_columns, len(fields)
                continue
        if len(fields) != width:
            raise GraphFormatError(
                f"{path}:{number}: expected {width} {kind} columns (head, relation, tail), "
                f"got {len(fields)}: {_preview(fields, delimiter)}"
            )
        head, relation, tail = (fields[i].strip() for i in columns)
        if not head or not relation or not tail:
            raise GraphFormatError(
                f"{path}:{number}: empty head, relation or tail in {_preview(fields, delimiter)}"
            )
        parsed.add_triple(head, relation, tail)
    return parsed


def _preview(fields: list[str], delimiter: str) -> str:
    text = delimiter.join(fields)
    return repr(text if len(text) <= 80 else text[:77] + "...")


def read_jsonl(path: Path, progress: bool = False) -> ParsedGraph:
    """JSON Lines: ``{"head", "relation", "tail"}`` objects, and optional entity objects
    ``{"entity", "name", "aliases", "description", "type"}``."""
    parsed = ParsedGraph()
    for number, line in _lines(path, progress):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as error:
            raise GraphFormatError(f"{path}:{number}: invalid JSON ({error.msg})") from None
        if not isinstance(obj, dict):
            raise GraphFormatError(
                f"{path}:{number}: expected a JSON object, got {type(obj).__name__}"
            )
        if "head" in obj or "tail" in obj:
            missing = [k for k in ("head", "relation", "tail") if not str(obj.get(k, "")).strip()]
            if missing:
                raise GraphFormatError(f"{path}:{number}: triple object lacks {', '.join(missing)}")
            parsed.add_triple(
                str(obj["head"]).strip(), str(obj["relation"]).strip(), str(obj["tail"]).strip()
            )
        else:
            parsed.add_record(entity_record_from_mapping(obj, f"{path}:{number}"))
    return parsed


def entity_record_from_mapping(obj: dict, where: str) -> EntityRecord:
    """An :class:`EntityRecord` from a dict with an ``entity``/``id``/``key`` field."""
    key = next((obj[k] for k in ENTITY_KEY_COLUMNS if k in obj and str(obj[k]).strip()), None)
    if key is None:
        raise GraphFormatError(
            f"{where}: expected a triple (head, relation, tail) or an entity with an "
            f"'entity' field, got keys {sorted(obj)}"
        )
    return EntityRecord(
        key=str(key).strip(),
        name=str(obj.get("name") or "").strip(),
        aliases=split_aliases(obj.get("aliases")),
        description=str(obj.get("description") or "").strip(),
        type=str(obj.get("type") or obj.get("kind") or "").strip(),
    )


def read_entities_file(path: Path) -> dict[str, EntityRecord]:
    """Entity attributes from TSV/CSV (header with ``entity`` and optional ``name``,
    ``aliases``, ``description``, ``type``) or JSON Lines."""
    fmt = detect_format(path)
    if fmt == "jsonl":
        parsed = read_jsonl(path)
        if parsed.num_triples:
            raise GraphFormatError(f"{path}: an entities file must not contain triples")
        return parsed.records
    if fmt not in ("tsv", "csv"):
        raise GraphFormatError(f"{path}: entities files are TSV, CSV or JSON Lines, not {fmt}")
    entities: dict[str, EntityRecord] = {}
    header: list[str] | None = None
    for number, fields in _rows(path, "\t" if fmt == "tsv" else ","):
        if header is None:
            header = [h.strip().lower() for h in fields]
            if _column(header, ENTITY_KEY_COLUMNS) is None:
                raise GraphFormatError(
                    f"{path}:{number}: expected a header with an 'entity' column "
                    f"(and optional name, aliases, description, type), got {fields}"
                )
            continue
        if len(fields) != len(header):
            raise GraphFormatError(
                f"{path}:{number}: expected {len(header)} columns ({', '.join(header)}), "
                f"got {len(fields)}"
            )
        record = entity_record_from_mapping(dict(zip(header, fields)), f"{path}:{number}")
        if record.key in entities:
            entities[record.key].update(record)
        else:
            entities[record.key] = record
    if header is None:
        raise GraphFormatError(f"{path}: the entities file is empty")
    return entities


_NT_TERM = re.compile(
    r'\s*(<[^>]*>|_:[A-Za-z0-9_.\-]+|"(?:[^"\\]|\\.)*"(?:@[A-Za-z0-9\-]+|\^\^<[^>]*>)?)'
)
LABEL_PREDICATES = {
    "http://www.w3.org/2000/01/rdf-schema#label",
    "http://www.w3.org/2004/02/skos/core#prefLabel",
    "http://schema.org/name",
}
ALIAS_PREDICATES = {"http://www.w3.org/2004/02/skos/core#altLabel"}
DESCRIPTION_PREDICATES = {
    "http://www.w3.org/2000/01/rdf-schema#comment",
    "http://schema.org/description",
    "http://purl.org/dc/terms/description",
}
TYPE_PREDICATE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"


def _nt_terms(path: Path, number: int, line: str) -> list[str]:
    terms, position = [], 0
    for _ in range(3):
        match = _NT_TERM.match(line, position)
        if match is None:
            raise GraphFormatError(
                f"{path}:{number}: expected an N-Triples statement '<s> <p> <o> .', "
                f"could not read term {len(terms) + 1} of {line[:80]!r}"
            )
        terms.append(match.group(1))
        position = match.end()
    if line[position:].strip() != ".":
        raise GraphFormatError(f"{path}:{number}: expected ' .' at the end of the statement")
    return terms


def _unescape_literal(term: str) -> str:
    body = term[1 : term.rindex('"')]
    return json.loads('"' + body.replace("\t", "\\t") + '"') if "\\" in body else body


def _local_name(iri: str) -> str:
    return re.split(r"[#/:]", iri.rstrip("/#"))[-1] or iri


def read_ntriples(path: Path, progress: bool = False) -> ParsedGraph:
    """N-Triples: IRIs become entities (key = IRI, name = label or local name); labels,
    altLabels, comments and rdf:type fill entity attributes; other literals are kept in
    ``literals``."""
    parsed = ParsedGraph()
    for number, line in _lines(path, progress):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        subject, predicate, obj = _nt_terms(path, number, stripped)
        if subject.startswith('"') or not predicate.startswith("<"):
            raise GraphFormatError(f"{path}:{number}: subject and predicate must be IRIs")
        s_key, p_key = subject.strip("<>"), predicate.strip("<>")
        record = _nt_record(parsed, s_key)
        if obj.startswith('"'):
            value = _unescape_literal(obj)
            if p_key in LABEL_PREDICATES:
                if record.name == _local_name(s_key):
                    record.name = value
                elif value not in record.aliases:
                    record.aliases.append(value)
            elif p_key in ALIAS_PREDICATES:
                record.aliases.append(value)
            elif p_key in DESCRIPTION_PREDICATES and not record.description:
                record.description = value
            else:
                parsed.literals.append((s_key, p_key, value))
            continue
        o_key = obj.strip("<>")
        _nt_record(parsed, o_key)
        if p_key == TYPE_PREDICATE and not record.type:
            record.type = _local_name(o_key)
        parsed.add_triple(s_key, p_key, o_key)
    return parsed


def _nt_record(parsed: ParsedGraph, key: str) -> EntityRecord:
    if key not in parsed.records:
        parsed.add_record(EntityRecord(key, name=_local_name(key)))
    return parsed.records[key]


def read_triples_file(path: Path, fmt: str, progress: bool = False) -> ParsedGraph:
    """Dispatch to the reader for ``fmt`` (graph formats through networkx are handled by
    :meth:`KnowledgeGraph.load`)."""
    if fmt == "tsv":
        return read_delimited(path, "\t", progress)
    if fmt == "csv":
        return read_delimited(path, ",", progress)
    if fmt == "jsonl":
        return read_jsonl(path, progress)
    if fmt == "nt":
        return read_ntriples(path, progress)
    raise GraphFormatError(f"{path}: unknown graph format {fmt!r}")
