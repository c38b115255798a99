"""Bilingual lexicons (``source<TAB>target`` rows) as a translation knowledge graph.

Each row becomes ``src:word --translation--> tgt:word``; entities are typed by language so a
linker can be limited to the source side (``EntityLinker(kg, types=[src])`` or
``LinkingConfig(types=[src])``) while the target words are reached as 1-hop neighbours.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from kgmm.errors import GraphFormatError
from kgmm.graph import KnowledgeGraph

RELATION = "translation"
_WORD = re.compile(r"\w+")


def read_lexicon(path: str | Path, src: str, tgt: str) -> list[tuple[str, str]]:
    """The ``(source, target)`` rows of a two-column TSV file.

    A first row that names the two languages (``src<TAB>tgt``) is a header and skipped;
    any row without exactly two non-empty fields raises :class:`GraphFormatError` naming the
    file and line.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise GraphFormatError(f"{path}: cannot read the lexicon ({error})") from None
    pairs = []
    for number, line in enumerate(lines, 1):
        fields = [field.strip() for field in line.split("\t")]
        if number == 1 and [f.lower() for f in fields] == [src.lower(), tgt.lower()]:
            continue
        if len(fields) != 2 or not all(fields):
            raise GraphFormatError(
                f"{path}:{number}: expected 'source<TAB>target' with two non-empty fields, "
                f"got {line!r}"
            )
        pairs.append((fields[0], fields[1]))
    return pairs


def lexicon_graph(
    paths: Sequence[str | Path],
    src: str,
    tgt: str,
    source_vocabulary: Iterable[str] | None = None,
) -> KnowledgeGraph:
    """One graph from the lexicon files, entities typed ``src`` / ``tgt``.

    With ``source_vocabulary`` (lower-cased words of the texts to be linked) only rows whose
    source side consists of those words are kept: a row with any other word can never be
    linked, so this makes the graph smaller without changing what is linked.
    """
    vocabulary = None if source_vocabulary is None else {w.lower() for w in source_vocabulary}
    pairs = dict.fromkeys(pair for path in paths for pair in read_lexicon(path, src, tgt))
    if vocabulary is not None:
        pairs = {
            (source, target): None
            for source, target in pairs
            if set(_WORD.findall(source.lower())) <= vocabulary
        }
    if not pairs:
        raise GraphFormatError(f"no lexicon rows left from {[str(p) for p in paths]}")
    entities = {}
    triples = []
    for source, target in pairs:
        head, tail = f"{src}:{source}", f"{tgt}:{target}"
        entities.setdefault(head, {"key": head, "name": source, "type": src})
        entities.setdefault(tail, {"key": tail, "name": target, "type": tgt})
        triples.append((head, RELATION, tail))
    return KnowledgeGraph.from_triples(triples, entities.values())


def vocabulary(texts: Iterable[str]) -> set[str]:
    """The lower-cased words of ``texts`` (the ``source_vocabulary`` of :func:`lexicon_graph`)."""
    return {word for text in texts for word in _WORD.findall(text.lower())}
