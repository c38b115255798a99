"""Sample manifests: JSON Lines, one sample dict a line."""

from __future__ import annotations

import json
from pathlib import Path

from kgmm.errors import DataError

MEDIA_FIELDS = ("image", "audio")


def read_manifest(path: str | Path) -> list[dict]:
    """Samples from a JSONL manifest; relative ``image``/``audio`` paths resolve against the
    manifest's folder. A malformed line raises :class:`DataError` naming file and line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read the manifest ({error})") from None
    samples = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            sample = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}:{number}: invalid JSON ({error.msg})") from None
        if not isinstance(sample, dict):
            raise DataError(f"{path}:{number}: expected a JSON object per line")
        for field in MEDIA_FIELDS:
            value = sample.get(field)
            if isinstance(value, str) and not Path(value).is_absolute():
                sample[field] = str(path.parent / value)
        samples.append(sample)
    if not samples:
        raise DataError(f"{path}: the manifest holds no samples")
    return samples
