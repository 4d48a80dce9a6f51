"""Audio held inside a Parquet shard (a Hugging Face dataset's ``Audio`` column), read on the
decode workers, row by row.

The hub stores an audio column as a struct ``{bytes, path}``: the file's bytes, and the name it
had. A shard holds gigabytes, so the driver never reads this column (:mod:`manifest.hf`); a
decode worker reads the rows of its batch, and of them only the row groups that hold them and
only this one column, streaming the row group a few rows at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import ErrorCode, RowError

__all__ = ["read_rows"]

# The hub's `datasets` writes audio row groups of 100 rows (PARQUET_ROW_GROUP_SIZE_FOR_AUDIO_
# DATASETS); a row group is streamed this many rows at a time, so a worker holds a few files'
# bytes beyond the ones it wants, not the whole row group.
_ROWS_PER_READ = 8
# Pages of a column chunk are read through a buffer this size instead of the whole chunk at once.
_BUFFER_BYTES = 1 << 20

Embedded = tuple[bytes | None, str | None]
"""A row's audio: its bytes and its path, either possibly null."""


def read_rows(uri: str, column: str, rows: Sequence[int]) -> list[Embedded | RowError]:
    """The audio of ``rows`` (0-based, any order) of the shard at ``uri``, in the order asked; a
    row the shard does not have is a RowError in its place. A shard that cannot be read at all
    raises one RowError."""
    import fsspec
    import pyarrow.parquet as pq

    try:
        fs, path = fsspec.core.url_to_fs(uri)
        with fs.open(path, "rb") as f:
            shard = pq.ParquetFile(f, buffer_size=_BUFFER_BYTES, pre_buffer=False)
            _check_column(shard, uri, column)
            return _read(shard, uri, column, rows)
    except RowError:
        raise
    except FileNotFoundError as exc:
        raise RowError(ErrorCode.MISSING_OBJECT, f"no such file or object: {uri}") from exc
    except Exception as exc:  # every storage backend, and pyarrow, has its own error types
        raise RowError(
            ErrorCode.READ_FAILED,
            f"could not read the audio of {uri} ({type(exc).__name__}: {exc})",
        ) from exc


def _check_column(shard, uri: str, column: str) -> None:
    import pyarrow as pa

    schema = shard.schema_arrow
    index = schema.get_field_index(column)
    kind = schema.field(column).type if index >= 0 else None
    if kind is None or not pa.types.is_struct(kind):
        raise RowError(
            ErrorCode.READ_FAILED,
            f"{uri} has no audio column {column!r} holding {{bytes, path}} "
            f"(columns: {', '.join(schema.names)})",
        )


def _read(shard, uri: str, column: str, rows: Sequence[int]) -> list[Embedded | RowError]:
    metadata = shard.metadata
    found: dict[int, Embedded] = {}
    first = 0
    for group in range(metadata.num_row_groups):
        size = metadata.row_group(group).num_rows
        wanted = sorted({r - first for r in rows if first <= r < first + size})
        if wanted:
            found.update(
                (first + r, value) for r, value in _read_group(shard, group, column, wanted)
            )
        first += size
    return [
        found[row]
        if row in found
        else RowError(
            ErrorCode.MISSING_OBJECT,
            f"{uri} has {metadata.num_rows} rows, and no row {row}: the shard changed since the "
            "manifest was read",
        )
        for row in rows
    ]


def _read_group(shard, group: int, column: str, wanted: list[int]) -> list[tuple[int, Embedded]]:
    """(row in the group, audio) of the ``wanted`` rows (sorted), streamed up to the last one."""
    out = []
    at = 0
    for batch in shard.iter_batches(
        batch_size=_ROWS_PER_READ, row_groups=[group], columns=[column], use_threads=False
    ):
        values = batch.column(0)
        names = [values.type.field(i).name for i in range(values.type.num_fields)]
        for row in wanted:
            if at <= row < at + len(values):
                out.append((row, _value(values, names, row - at)))
        at += len(values)
        if at > wanted[-1]:
            break
    return out


def _value(values, names: list[str], i: int) -> Embedded:
    if not values[i].is_valid:
        return None, None
    data = values.field("bytes")[i].as_py() if "bytes" in names else None
    path = values.field("path")[i].as_py() if "path" in names else None
    return data, path
