"""Text lengths of samples, for batching samples of like length together."""

from __future__ import annotations

from collections.abc import Sequence

from kgmm.errors import DataError


def text_lengths(dataset: Sequence[dict]) -> list[int]:
    """Characters of each sample's ``text`` (both parts of a pair); 0 without text. Text
    that is not a string or a list of strings raises :class:`DataError` naming the sample."""
    lengths = []
    for index in range(len(dataset)):
        text = dataset[index].get("text")
        pieces = [text] if isinstance(text, str) else text or []
        if not isinstance(pieces, (list, tuple)) or not all(isinstance(p, str) for p in pieces):
            raise DataError(
                f"sample {index}: 'text' must be a string or a list of strings, "
                f"got {type(text).__name__}"
            )
        lengths.append(sum(len(piece) for piece in pieces))
    return lengths


def longest_first(dataset: Sequence[dict]) -> list[int]:
    """Indices of ``dataset`` by text length, longest first (ties keep their order, so
    samples without text come last in theirs): batches cut from this order pad each sample
    to a length near its own, so inference does less work."""
    lengths = text_lengths(dataset)
    return sorted(range(len(lengths)), key=lambda index: -lengths[index])
