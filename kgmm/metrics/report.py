"""Plain-text tables for examples and benchmarks."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any

MISSING = "-"


def _cell(value: Any, float_format: str) -> str:
    if value is None:
        return MISSING
    if isinstance(value, Real) and not isinstance(value, (bool, Integral)):
        return format(value, float_format)
    return str(value)


def format_table(
    rows: Sequence[dict[str, Any]], columns: Sequence[str], float_format: str = ".4f"
) -> str:
    """Rows of dicts as an aligned text table: numbers right-aligned, text left-aligned.

    Written by hand to keep kgmm.metrics free of table libraries; a key a row lacks prints "-".
    """
    cells = [[_cell(row.get(column), float_format) for column in columns] for row in rows]
    numeric = [
        all(isinstance(row.get(column), Real) for row in rows if row.get(column) is not None)
        for column in columns
    ]
    widths = [
        max([len(column)] + [len(line[index]) for line in cells])
        for index, column in enumerate(columns)
    ]

    def line(values: Sequence[str]) -> str:
        padded = [
            value.rjust(width) if is_number else value.ljust(width)
            for value, width, is_number in zip(values, widths, numeric)
        ]
        return "  ".join(padded).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(list(columns)), rule] + [line(values) for values in cells])
