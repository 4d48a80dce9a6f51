"""The ``table`` format: JSON lines, CSV or Parquet with a row per recording, in columns the job's
settings name (``--audio-column``, ``--id-column``, ..., ``--offset-column``,
``--duration-column``). Only those columns are read."""

from __future__ import annotations

import csv
import dataclasses
import io

import pyarrow as pa

from ..config import ManifestConfig
from ..errors import ManifestError
from .entries import Entries, entries_table, seconds, seconds_column, text, text_column
from .files import ManifestFile

__all__ = ["read_table", "named_columns"]


def named_columns(config: ManifestConfig) -> dict[str, str]:
    """Entry column -> the manifest's column, as the settings name them."""
    return {
        "audio": config.audio_column,
        "id": config.id_column,
        "text": config.text_column,
        "language": config.language_column,
        "offset_s": config.offset_column,
        "duration_s": config.duration_column,
    }


_SECONDS = ("offset_s", "duration_s")


def read_table(file: ManifestFile, config: ManifestConfig) -> tuple[ManifestFile, pa.Table]:
    """The file's entries, with the file as they number its rows."""
    if file.kind == "parquet":
        return file, _read_parquet(file, config)
    try:
        return dataclasses.replace(file, counts_records=True), _read_text_fast(file, config)
    except (ManifestError, pa.ArrowException):
        # Value by value: slower (Python's JSON and CSV), but it says which line is wrong, and
        # takes what pyarrow's type inference refuses (a column of numbers and text).
        return file, _read_text(file, config)


def _read_text_fast(file: ManifestFile, config: ManifestConfig) -> pa.Table:
    """JSON lines or CSV through pyarrow, whole columns at once."""
    import pyarrow.csv as pacsv
    import pyarrow.json as pajson

    names = named_columns(config)
    with file.open() as f:
        if file.kind == "json":
            table = pajson.read_json(f)
        else:
            # Read named text columns as text: ids like "007" must not become integers.
            types = {name: pa.string() for entry, name in names.items() if entry not in _SECONDS}
            options = pacsv.ConvertOptions(column_types=types)
            table = pacsv.read_csv(f, convert_options=options)
    return _from_columns(file, config, table)


def _read_text(file: ManifestFile, config: ManifestConfig) -> pa.Table:
    rows = _csv_rows(file) if file.kind == "csv" else file.records()
    entries, seen = Entries(), {}
    named = [
        (entry, name, seconds if entry in _SECONDS else text)
        for entry, name in named_columns(config).items()
    ]
    for line, row in rows:
        seen.update(dict.fromkeys(row))
        where = file.where(line)
        entries.add(
            line, **{entry: read(row.get(name), where, name) for entry, name, read in named}
        )
    table = entries.table()
    if table.num_rows and config.audio_column not in seen:
        _no_audio_column(file, config, list(seen))
    return table


def _csv_rows(file: ManifestFile):
    """(line, row) of a CSV file with a header; blank cells are absent values."""
    with file.open() as f, file.reading():
        reader = csv.DictReader(io.TextIOWrapper(f, encoding="utf-8", newline=""))
        width = len(reader.fieldnames or [])
        for row in reader:
            if None in row or None in row.values():
                raise ManifestError(
                    f"{file.where(reader.line_num)}: not as many values as the header's {width} "
                    "columns (a comma inside a value must be quoted)"
                )
            yield reader.line_num, {k: v if v != "" else None for k, v in row.items()}


def _read_parquet(file: ManifestFile, config: ManifestConfig) -> pa.Table:
    import pyarrow.parquet as pq

    with file.open() as f, file.reading():
        schema = pq.read_schema(f)
        audio = schema.get_field_index(config.audio_column)
        if audio >= 0 and pa.types.is_struct(schema.field(audio).type):
            raise ManifestError(
                f"{file.uri}: column {config.audio_column!r} holds the audio itself (a Hugging "
                "Face dataset's layout); read it with --manifest-format hf (or auto)"
            )
        if audio < 0:
            _no_audio_column(file, config, schema.names)
        names = [name for name in named_columns(config).values() if name in schema.names]
        table = pq.read_table(f, columns=list(dict.fromkeys(names)))
    return _from_columns(file, config, table)


def _from_columns(file: ManifestFile, config: ManifestConfig, table: pa.Table) -> pa.Table:
    if table.num_rows and config.audio_column not in table.column_names:
        _no_audio_column(file, config, table.column_names)
    columns = {}
    for entry, name in named_columns(config).items():
        try:
            read = seconds_column if entry in _SECONDS else text_column
            columns[entry] = read(table, name)
        except ManifestError as exc:
            raise ManifestError(f"{file.uri}: {exc}") from exc
    return entries_table(table.num_rows, **columns)


def _no_audio_column(file: ManifestFile, config: ManifestConfig, columns: list[str]) -> None:
    raise ManifestError(
        f"{file.uri}: no {config.audio_column!r} column (columns: {', '.join(columns)}); "
        "name the audio column with --audio-column"
    )
