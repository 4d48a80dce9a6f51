"""What a reader finds in a manifest, before any check: a row per recording in the columns every
format maps to (:data:`ENTRY_SCHEMA`), each with the line (a Parquet file: the row) it came from.

Readers of JSON and CSV go value by value (:class:`Entries`, with :func:`text` and
:func:`seconds` naming the line of a value of the wrong kind); readers of Parquet go column by
column (:func:`entries_table`).
"""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ManifestError

__all__ = [
    "ENTRY_SCHEMA",
    "Entries",
    "text",
    "seconds",
    "whole_number",
    "text_column",
    "seconds_column",
    "entries_table",
]

ENTRY_SCHEMA = pa.schema(
    [
        pa.field("line", pa.int64(), nullable=False),
        pa.field("audio", pa.string()),
        pa.field("id", pa.string()),
        pa.field("text", pa.string()),
        pa.field("language", pa.string()),
        # The span: where it starts in the file (null: 0) and how long it is (null: to the end).
        pa.field("offset_s", pa.float64()),
        pa.field("duration_s", pa.float64()),
        pa.field("channel", pa.int32()),
        pa.field("file_channel", pa.int32()),
        pa.field("speaker", pa.string()),
    ]
)


class Entries:
    """Rows as a reader finds them, gathered column by column."""

    def __init__(self) -> None:
        self._columns: dict[str, list[Any]] = {name: [] for name in ENTRY_SCHEMA.names}

    def add(self, line: int, **values: Any) -> None:
        unknown = values.keys() - self._columns.keys()
        if unknown:
            raise TypeError(f"not entry columns: {sorted(unknown)}")
        values["line"] = line
        for name, column in self._columns.items():
            column.append(values.get(name))

    def table(self) -> pa.Table:
        return pa.table(
            {
                name: pa.array(values, ENTRY_SCHEMA.field(name).type)
                for name, values in self._columns.items()
            },
            schema=ENTRY_SCHEMA,
        )


def text(value: object, where: str, key: str) -> str | None:
    """A text value (a number as written: ids like 42); None where absent."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ManifestError(f"{where}: {key!r} is {type(value).__name__} {value!r}; expected text")


def seconds(value: object, where: str, key: str) -> float | None:
    """A number of seconds, finite (a numeric string too, as CSV gives); None where absent."""
    if value is None or value == "":
        return None
    number = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if number is None or not math.isfinite(number):
        raise ManifestError(f"{where}: {key!r} is {value!r}; expected a number of seconds")
    return number


def whole_number(value: object, where: str, key: str) -> int:
    """A count or an index, >= 0."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ManifestError(f"{where}: {key!r} is {value!r}; expected a whole number >= 0")


def text_column(table: pa.Table, name: str) -> pa.Array | None:
    """A column as text (numbers as written), or None if the table has no such column."""
    if name not in table.column_names:
        return None
    column = table[name].combine_chunks()
    if pa.types.is_null(column.type):
        return pa.nulls(len(column), pa.string())
    try:
        return column.cast(pa.string())
    except pa.ArrowException as exc:
        raise ManifestError(
            f"column {name!r} of type {column.type} cannot be read as text"
        ) from exc


def seconds_column(table: pa.Table, name: str) -> pa.Array | None:
    """A column as seconds, or None if the table has no such column."""
    if name not in table.column_names:
        return None
    column = table[name].combine_chunks()
    try:
        return column.cast(pa.float64())
    except pa.ArrowException as exc:
        raise ManifestError(
            f"column {name!r} of type {column.type} cannot be read as seconds"
        ) from exc


def entries_table(rows: int, **columns: pa.Array | None) -> pa.Table:
    """Entries from whole columns (the others null); lines are rows, from 1."""
    arrays = {"line": pa.array(range(1, rows + 1), pa.int64())}
    for field in ENTRY_SCHEMA:
        if field.name != "line":
            given = columns.get(field.name)
            arrays[field.name] = (
                pa.nulls(rows, field.type) if given is None else pc.cast(given, field.type)
            )
    return pa.table(arrays, schema=ENTRY_SCHEMA)
