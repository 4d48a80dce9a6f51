"""The ``hf`` format: Parquet shards whose audio column holds the audio itself, a struct
``{bytes, path}`` (how the Hugging Face hub stores an ``Audio`` feature: ``data/train-00000-of-
00004.parquet``).

A shard holds gigabytes of audio, so the driver reads only its footer and the small columns the
settings name (id, text, language, span); each row's audio stays where it is, referred to as row
``n`` of the shard's audio column (:func:`fetch.embedded_ref`), and the decode worker that gets the
row reads it (:mod:`embedded`).
"""

from __future__ import annotations

import pyarrow as pa

from ..config import ManifestConfig
from ..errors import ManifestError
from ..fetch import embedded_ref
from .entries import entries_table, seconds_column, text_column
from .files import ManifestFile
from .table import named_columns

__all__ = ["holds_audio", "read_hf"]

_AUDIO_FIELDS = ("bytes", "path")


def holds_audio(file: ManifestFile, config: ManifestConfig) -> bool:
    """Whether the file is Parquet whose audio column is the hub's ``{bytes, path}`` struct."""
    if file.kind != "parquet":
        return False
    return _audio_type(_schema(file), config.audio_column) is not None


def _schema(file: ManifestFile) -> pa.Schema:
    import pyarrow.parquet as pq

    with file.open() as f, file.reading():
        return pq.read_schema(f)


def _audio_type(schema: pa.Schema, column: str) -> pa.StructType | None:
    index = schema.get_field_index(column)
    kind = schema.field(index).type if index >= 0 else None
    if kind is None or not pa.types.is_struct(kind):
        return None
    names = {kind.field(i).name for i in range(kind.num_fields)}
    return kind if "bytes" in names else None


def read_hf(file: ManifestFile, config: ManifestConfig) -> tuple[ManifestFile, pa.Table]:
    """The shard's entries: every row, its audio referred to, its small columns read."""
    import pyarrow.parquet as pq

    if file.kind != "parquet":
        raise ManifestError(f"{file.uri}: an hf manifest is Parquet shards, not {file.kind}")
    with file.open() as f, file.reading():
        schema = pq.read_schema(f)
        if _audio_type(schema, config.audio_column) is None:
            raise ManifestError(
                f"{file.uri}: no column {config.audio_column!r} holding the audio as "
                f"{{{', '.join(_AUDIO_FIELDS)}}} (columns: {', '.join(schema.names)}); name it "
                "with --audio-column"
            )
        small = {
            entry: name
            for entry, name in named_columns(config).items()
            if entry != "audio" and name in schema.names
        }
        table = pq.read_table(f, columns=list(dict.fromkeys(small.values())))
        rows = pq.read_metadata(f).num_rows
    shard = file.location
    columns: dict[str, pa.Array | None] = {
        "audio": pa.array(
            [embedded_ref(shard, row, config.audio_column) for row in range(rows)], pa.string()
        )
    }
    for entry, name in small.items():
        try:
            read = seconds_column if entry in ("offset_s", "duration_s") else text_column
            columns[entry] = read(table, name)
        except ManifestError as exc:
            raise ManifestError(f"{file.uri}: {exc}") from exc
    return file, entries_table(rows, **columns)
