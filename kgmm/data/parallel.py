"""Parallel corpora stored as one sentence per line per language (Multi30k, IWSLT, WMT style).

A split ``S`` of the pair ``src-tgt`` is the two files ``S.src`` and ``S.tgt`` (optionally
gzipped, optionally under ``raw/``): line i of one is the translation of line i of the other.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

from kgmm.errors import DataError

_LAYOUTS = ("raw/{split}.{lang}.gz", "raw/{split}.{lang}", "{split}.{lang}.gz", "{split}.{lang}")


def parallel_file(data_dir: str | Path, split: str, lang: str) -> Path:
    """The file holding ``split`` in language ``lang`` (see the module docstring)."""
    data_dir = Path(data_dir)
    for layout in _LAYOUTS:
        path = data_dir / layout.format(split=split, lang=lang)
        if path.is_file():
            return path
    tried = ", ".join(layout.format(split=split, lang=lang) for layout in _LAYOUTS)
    raise DataError(f"{data_dir}: no {lang!r} file for split {split!r} (looked for {tried})")


def parallel_splits(data_dir: str | Path, src: str, tgt: str) -> list[str]:
    """The names of the splits that have both a ``src`` and a ``tgt`` file, sorted."""
    data_dir = Path(data_dir)
    found: dict[str, set[str]] = {}
    pattern = re.compile(r"^(?P<split>.+)\.(?P<lang>[^.]+)$")
    for folder in (data_dir, data_dir / "raw"):
        for path in folder.glob("*") if folder.is_dir() else ():
            match = pattern.match(path.name.removesuffix(".gz"))
            if match and match["lang"] in (src, tgt):
                found.setdefault(match["split"], set()).add(match["lang"])
    return sorted(split for split, langs in found.items() if langs == {src, tgt})


def read_sentences(path: str | Path) -> list[str]:
    """The lines of a UTF-8 text file (gzipped if it ends in ``.gz``), stripped; an empty
    line raises :class:`DataError` with its number, so the pairing cannot silently shift."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            lines = [line.strip() for line in handle]
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read the sentences ({error})") from None
    for number, line in enumerate(lines, 1):
        if not line:
            raise DataError(f"{path}:{number}: empty sentence")
    return lines


def load_parallel(data_dir: str | Path, split: str, src: str, tgt: str) -> list[dict]:
    """``[{"text": source sentence, "target": target sentence}]`` of one split."""
    source_path = parallel_file(data_dir, split, src)
    target_path = parallel_file(data_dir, split, tgt)
    sources, targets = read_sentences(source_path), read_sentences(target_path)
    if len(sources) != len(targets):
        raise DataError(
            f"{source_path} has {len(sources)} sentences but {target_path} has "
            f"{len(targets)}; line i of one must translate line i of the other"
        )
    return [{"text": s, "target": t} for s, t in zip(sources, targets)]
