"""The ``table`` format: JSON lines, CSV or Parquet with a row per recording, in columns the job's
settings name (``--audio-column``, ``--id-column``, ..., ``--offset-column``,
``--duration-column``). Only those columns are read."""

from __future__ import annotations

import csv
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


def read_table(file: ManifestFile, config: ManifestConfig) -> pa.Table:
    """The file's entries."""
    if file.kind == "parquet":
        return _read_parquet(file, config)
    rows = _csv_rows(file) if file.kind == "csv" else file.records()
    entries, seen = Entries(), {}
    for line, row in rows:
        seen.update(dict.fromkeys(row))
        where = file.where(line)
        entries.add(
            line,
            **{
                entry: (seconds if entry in _SECONDS else text)(row.get(name), where, name)
                for entry, name in named_columns(config).items()
            },
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
    where = f"{file.uri}: "
    columns = {}
    for entry, name in named_columns(config).items():
        try:
            read = seconds_column if entry in _SECONDS else text_column
            columns[entry] = read(table, name)
        except ManifestError as exc:
            raise ManifestError(where + str(exc)) from exc
    return entries_table(table.num_rows, **columns)


def _no_audio_column(file: ManifestFile, config: ManifestConfig, columns: list[str]) -> None:
    raise ManifestError(
        f"{file.uri}: no {config.audio_column!r} column (columns: {', '.join(columns)}); "
        "name the audio column with --audio-column"
    )
