"""Text lengths of samples, for batching samples of like length together."""

from __future__ import annotations

from collections.abc import Sequence


def text_lengths(dataset: Sequence[dict]) -> list[int]:
    """Characters of each sample's ``text`` (both parts of a pair); 0 without text."""
    lengths = []
    for index in range(len(dataset)):
        text = dataset[index].get("text")
        pieces = [text] if isinstance(text, str) else list(text or ())
        lengths.append(sum(len(str(piece)) for piece in pieces))
    return lengths


def longest_first(dataset: Sequence[dict]) -> list[int]:
    """Indices of ``dataset`` by text length, longest first (ties keep their order, so
    samples without text come last in theirs): batches cut from this order pad each sample
    to a length near its own, so inference does less work."""
    lengths = text_lengths(dataset)
    return sorted(range(len(lengths)), key=lambda index: -lengths[index])
