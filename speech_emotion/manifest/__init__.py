"""Reading and validating manifests, on the driver, before any model is loaded.

A manifest is a file, or a folder/prefix of them, at any fsspec URI, in one of the formats the
speech world publishes (:data:`FORMATS`): a ``table`` of named columns (JSONL, CSV, Parquet), a
Hugging Face dataset's Parquet shards with the audio inside (``hf``), NeMo's JSON lines
(``nemo``), lhotse's recordings and supervisions, or cuts (``lhotse``); ``auto`` tells them apart
by the files (a folder may mix them). Whatever the format, it comes out as a table in
:data:`schema.RECORDING_SCHEMA`: ids unique, audio URIs absolute, spans placed, empty transcripts
and languages null, the rows of a file next to each other (so that a batch reads and decodes a
file once for all its spans). Readers only parse; every check on what they read lives in
:mod:`.normalise`, once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

from ..config import ManifestConfig
from ..errors import ManifestError
from ..fetch import location
from ..schema import RECORDING_SCHEMA
from . import hf, lhotse, nemo
from .files import ManifestFile, manifest_files
from .normalise import derive_id, normalise
from .table import read_table

__all__ = ["read_manifest", "derive_id", "detect_format", "FORMATS"]

logger = logging.getLogger(__name__)

Reader = Callable[[list[ManifestFile], ManifestConfig], list[tuple[ManifestFile, pa.Table]]]


def _each(read: Callable[[ManifestFile, ManifestConfig], tuple[ManifestFile, pa.Table]]) -> Reader:
    return lambda files, config: [read(file, config) for file in files]


FORMATS: dict[str, Reader] = {
    "table": _each(read_table),
    "hf": _each(hf.read_hf),
    "nemo": _each(nemo.read_nemo),
    "lhotse": lhotse.read_lhotse,
}
"""Format name -> reader of a manifest's files into (file, entries) pairs."""


def detect_format(file: ManifestFile, config: ManifestConfig) -> str:
    """The format a file is in, by its kind and, for JSON lines, its first line's keys."""
    if file.kind == "parquet":
        return "hf" if hf.holds_audio(file, config) else "table"
    if file.kind == "json":
        first = file.first_record()
        if lhotse.claims(first):
            return "lhotse"
        if first is not None and nemo.claims(first, config):
            return "nemo"
    return "table"


def _by_format(files: list[ManifestFile], config: ManifestConfig) -> dict[str, list[ManifestFile]]:
    """The files of each format: all in the one named, else each in the one it is in (a folder
    may hold several)."""
    if config.format != "auto":
        return {config.format: files}
    found: dict[str, list[ManifestFile]] = {}
    for file in files:
        found.setdefault(detect_format(file, config), []).append(file)
    logger.info(
        "manifest %s: %s",
        config.uri,
        ", ".join(f"{fmt} ({len(group)} files)" for fmt, group in found.items()),
    )
    return found


def _check_unique_ids(table: pa.Table, uri: str) -> None:
    counts = pc.value_counts(table["id"]).flatten()
    values, occurrences = counts
    duplicated = pc.filter(values, pc.greater(occurrences, 1))
    if len(duplicated):
        examples = ", ".join(repr(v) for v in duplicated.to_pylist()[:5])
        raise ManifestError(
            f"{uri}: {len(duplicated)} ids appear more than once (e.g. {examples}); ids must be "
            "unique (where none is given it comes from the audio URI and span, so the same "
            "audio and span are listed twice)"
        )


def _grouped_by_file(table: pa.Table) -> pa.Table:
    """The rows of each file together, by start, files in the order they first appear; a
    manifest without shared files keeps its order."""
    first: dict[str, int] = {}
    files = [first.setdefault(location(uri), i) for i, uri in enumerate(table["audio"].to_pylist())]
    order = pc.sort_indices(
        pa.table({"file": files, "start": table["start_s"], "row": range(table.num_rows)}),
        sort_keys=[("file", "ascending"), ("start", "ascending"), ("row", "ascending")],
    )
    return table.take(order)


def read_manifest(config: ManifestConfig) -> pa.Table:
    """The manifest as recordings, or a :class:`ManifestError` naming the file, the line and
    the problem."""
    found = [
        read
        for fmt, files in _by_format(manifest_files(config.uri), config).items()
        for read in FORMATS[fmt](files, config)
    ]
    tables = [normalise(file, entries) for file, entries in found]
    table = pa.concat_tables(tables) if tables else RECORDING_SCHEMA.empty_table()
    if table.num_rows == 0:
        raise ManifestError(f"{config.uri}: manifest has no rows")
    _check_unique_ids(table, config.uri)
    return _grouped_by_file(table)
