"""Reading and validating manifests, on the driver, before any model is loaded.

A manifest is a file, or a folder/prefix of them, at any fsspec URI, in one of the formats a
:func:`reader` is registered for (JSONL, CSV, Parquet). Whatever it calls its columns, it comes out
as a table in :data:`schema.RECORDING_SCHEMA`: ids unique, audio URIs absolute, empty transcripts
and languages null. Readers only parse; every check on what they read lives here, once.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Callable
from typing import IO

import pyarrow as pa
import pyarrow.compute as pc

from .config import ManifestConfig
from .errors import ManifestError
from .schema import RECORDING_SCHEMA

__all__ = ["read_manifest", "derive_id", "reader", "READERS", "SUFFIXES"]

Reader = Callable[[IO[bytes], ManifestConfig], pa.Table]
READERS: dict[str, Reader] = {}
"""Format name -> function reading one open manifest file into a table of its columns."""
SUFFIXES: dict[str, str] = {}
"""File suffix -> format name."""


def reader(name: str, *suffixes: str) -> Callable[[Reader], Reader]:
    """Registers a manifest reader for files ending in ``suffixes``."""

    def register(read: Reader) -> Reader:
        READERS[name] = read
        SUFFIXES.update(dict.fromkeys(suffixes, name))
        return read

    return register


@reader("json", ".jsonl", ".ndjson", ".json")
def _read_json(f: IO[bytes], config: ManifestConfig) -> pa.Table:
    import pyarrow.json as pajson

    return pajson.read_json(f)


@reader("csv", ".csv")
def _read_csv(f: IO[bytes], config: ManifestConfig) -> pa.Table:
    import pyarrow.csv as pacsv

    # Read named columns as strings: ids like "007" must not become integers.
    names = [config.audio_column, config.id_column, config.text_column, config.language_column]
    options = pacsv.ConvertOptions(
        column_types={name: pa.string() for name in names}, strings_can_be_null=True
    )
    return pacsv.read_csv(f, convert_options=options)


@reader("parquet", ".parquet", ".pq")
def _read_parquet(f: IO[bytes], config: ManifestConfig) -> pa.Table:
    import pyarrow.parquet as pq

    return pq.read_table(f)


def derive_id(audio_uri: str) -> str:
    """Stable across runs for the same URI, so re-runs and joins line up."""
    return hashlib.sha1(audio_uri.encode()).hexdigest()[:16]


def _format_of(path: str) -> str | None:
    return SUFFIXES.get(posixpath.splitext(path)[1].lower())


def _manifest_files(fs, path: str, uri: str) -> list[tuple[str, str]]:
    """(path, format) of each manifest file ``uri`` names."""
    if fs.isdir(path):
        files = [(p, fmt) for p in sorted(fs.find(path)) if (fmt := _format_of(p))]
        if not files:
            raise ManifestError(
                f"{uri}: folder holds no manifest files ({', '.join(sorted(SUFFIXES))})"
            )
        return files
    if not fs.exists(path):
        raise ManifestError(f"{uri}: manifest not found")
    fmt = _format_of(path)
    if fmt is None:
        raise ManifestError(
            f"{uri}: unknown manifest format {posixpath.splitext(path)[1]!r}; "
            f"expected one of {', '.join(sorted(SUFFIXES))}"
        )
    return [(path, fmt)]


def _read_file(fs, path: str, fmt: str, config: ManifestConfig) -> pa.Table:
    try:
        with fs.open(path, "rb") as f:
            return READERS[fmt](f, config)
    except (pa.ArrowException, OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ManifestError(
            f"{fs.unstrip_protocol(path)}: not a readable {fmt} manifest ({reason})"
        ) from exc


def _string_column(table: pa.Table, name: str) -> pa.Array | None:
    if name not in table.column_names:
        return None
    column = table[name].combine_chunks()
    if pa.types.is_null(column.type):
        return pa.nulls(len(column), pa.string())
    try:
        column = pc.utf8_trim_whitespace(column.cast(pa.string()))
    except pa.ArrowException as exc:
        raise ManifestError(
            f"column {name!r} of type {column.type} cannot be read as text"
        ) from exc
    return pc.if_else(pc.equal(column, ""), pa.scalar(None, pa.string()), column)


def _resolve_audio(value: str, base: str, protocol: str) -> str:
    if "://" in value:
        return value
    if not protocol and value.startswith("/"):
        return value
    joined = posixpath.normpath(posixpath.join(base, value))
    return f"{protocol}://{joined}" if protocol else joined


def _normalise(table: pa.Table, fs, path: str, config: ManifestConfig) -> pa.Table:
    where = fs.unstrip_protocol(path)
    audio = _string_column(table, config.audio_column)
    if audio is None:
        raise ManifestError(
            f"{where}: no {config.audio_column!r} column "
            f"(columns: {', '.join(table.column_names)}); "
            "name the audio column with --audio-column"
        )
    blank = pc.sum(pc.is_null(audio)).as_py() or 0
    if blank:
        first = pc.index(pc.is_null(audio), True).as_py()
        raise ManifestError(f"{where}: {blank} rows have no audio path (first at row {first + 1})")

    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    protocol = "" if protocol in ("file", "local") else protocol
    base = posixpath.dirname(path)
    audio_uris = [_resolve_audio(v, base, protocol) for v in audio.to_pylist()]

    ids = _string_column(table, config.id_column)
    given = ids.to_pylist() if ids is not None else [None] * len(audio_uris)
    id_values = [
        i if i is not None else derive_id(uri) for i, uri in zip(given, audio_uris, strict=True)
    ]
    text = _string_column(table, config.text_column)
    language = _string_column(table, config.language_column)
    n = len(audio_uris)
    return pa.table(
        {
            "id": pa.array(id_values, pa.string()),
            "audio": pa.array(audio_uris, pa.string()),
            "text": text if text is not None else pa.nulls(n, pa.string()),
            "language": pc.utf8_lower(language)
            if language is not None
            else pa.nulls(n, pa.string()),
            "start_s": pa.array([0.0] * n, pa.float64()),
            "end_s": pa.nulls(n, pa.float64()),
            "attempt": pa.array([1] * n, pa.int32()),
        },
        schema=RECORDING_SCHEMA,
    )


def _check_unique_ids(table: pa.Table, uri: str) -> None:
    counts = pc.value_counts(table["id"]).flatten()
    values, occurrences = counts
    duplicated = pc.filter(values, pc.greater(occurrences, 1))
    if len(duplicated):
        examples = ", ".join(repr(v) for v in duplicated.to_pylist()[:5])
        raise ManifestError(
            f"{uri}: {len(duplicated)} ids appear more than once (e.g. {examples}); ids must be "
            "unique (without an id column they come from the audio URI, so a URI is listed twice)"
        )


def read_manifest(config: ManifestConfig) -> pa.Table:
    """The manifest as recordings, or a :class:`ManifestError` naming the file and the problem."""
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(config.uri)
        files = _manifest_files(fs, path, config.uri)
    except ManifestError:
        raise
    except Exception as exc:  # storage errors of any backend, named for the user
        raise ManifestError(f"{config.uri}: cannot be read ({type(exc).__name__}: {exc})") from exc
    table = pa.concat_tables(
        [_normalise(_read_file(fs, f, fmt, config), fs, f, config) for f, fmt in files]
    )
    if table.num_rows == 0:
        raise ManifestError(f"{config.uri}: manifest has no rows")
    _check_unique_ids(table, config.uri)
    return table
