"""``MetricsLog``: ``metrics.jsonl``, one JSON object per logging step or evaluation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class MetricsLog:
    """Appends records to a JSON Lines file a person can plot (``pandas.read_json(...,
    lines=True)``). Disabled logs (non-zero ranks) write nothing."""

    def __init__(self, path: str | Path, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop records after ``step`` (written by a run that was killed, then resumed)."""
        if not self.enabled or not self.path.exists():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except json.JSONDecodeError:
                continue  # a line cut short when the process was killed
        self.path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def read(self) -> list[dict[str, Any]]:
        """Every record, oldest first."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines()]
