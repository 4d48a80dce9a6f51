"""Manifest files: which a URI names, what kind each is, and reading them, compressed or not.

A file's kind comes from its name: ``.jsonl``/``.ndjson``/``.json`` (JSON lines), ``.csv``, or
``.parquet``/``.pq``; a text manifest may be compressed, ``.gz``, ``.zst``/``.zstd`` or ``.bz2``
after its kind, and is read through the decompressor as it streams. Every failure to read one is
a :class:`ManifestError` naming the file (and the line, where there is one).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import IO, Any

import pyarrow as pa

from ..errors import ManifestError

__all__ = ["ManifestFile", "manifest_files", "KINDS", "COMPRESSIONS"]

KINDS = {".jsonl": "json", ".ndjson": "json", ".json": "json", ".csv": "csv"}
KINDS |= {".parquet": "parquet", ".pq": "parquet"}
"""File suffix -> kind."""
COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd", ".bz2": "bz2"}
"""Suffix after the kind -> pyarrow codec (text kinds only)."""


@dataclass(frozen=True)
class ManifestFile:
    """One manifest file on its filesystem."""

    fs: Any
    path: str
    kind: str
    """json, csv or parquet."""
    compression: str | None = None
    counts_records: bool = False
    """The numbers its readers give are records (data rows), not lines: pyarrow's readers skip
    blank lines and a CSV's header. :meth:`where` finds the line, only when a message needs it."""

    @cached_property
    def uri(self) -> str:
        return self.fs.unstrip_protocol(self.path)

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    def where(self, line: int) -> str:
        """The file and a place in it, for messages: a line of text, a Parquet row."""
        if self.kind == "parquet":
            return f"{self.uri}: row {line}"
        return f"{self.uri}: line {self._line_of(line) if self.counts_records else line}"

    def _line_of(self, record: int) -> int:
        """The line on which the ``record``-th record (from 1) starts."""
        if self.kind == "json":
            return next(n for i, (n, _) in enumerate(self.lines(), start=1) if i == record)
        with self.open() as f, self.reading():
            reader = csv.reader(io.TextIOWrapper(f, encoding="utf-8", newline=""))
            line = 1
            for index, _ in enumerate(reader):  # the header is record 0
                if index == record:
                    return line
                line = reader.line_num + 1
        raise ValueError(f"{self.uri} has no record {record}")

    @cached_property
    def _protocol(self) -> str:
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        return "" if protocol in ("file", "local") else protocol

    def resolve(self, value: str) -> str:
        """A path as the manifest writes it, as a URI: relative paths from the file's folder, on
        its store; URIs and absolute local paths as they are."""
        protocol = self._protocol
        if "://" in value or (not protocol and value.startswith("/")):
            return value
        joined = posixpath.normpath(posixpath.join(posixpath.dirname(self.path), value))
        return f"{protocol}://{joined}" if protocol else joined

    @property
    def location(self) -> str:
        """The file itself as :meth:`resolve` writes URIs."""
        return self.resolve(self.name)

    def sibling(self, name: str) -> ManifestFile | None:
        """The file ``name`` in the same folder, if it exists."""
        path = posixpath.join(posixpath.dirname(self.path), name)
        return _file(self.fs, path) if self.fs.isfile(path) else None

    @contextlib.contextmanager
    def open(self) -> Iterator[IO[bytes]]:
        """The file's bytes, decompressed; a failure to read them names the file."""
        with self.reading(), self.fs.open(self.path, "rb") as raw:
            if self.compression is None:
                yield raw
                return
            stream = pa.CompressedInputStream(pa.PythonFile(raw, mode="r"), self.compression)
            with stream:
                yield stream

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Turns a storage, decompression or encoding failure into a ManifestError."""
        try:
            yield
        except ManifestError:
            raise
        except (pa.ArrowException, OSError, ValueError, EOFError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            what = f"{self.compression}-compressed " if self.compression else ""
            raise ManifestError(
                f"{self.uri}: not a readable {what}{self.kind} manifest ({reason})"
            ) from exc

    def lines(self) -> Iterator[tuple[int, str]]:
        """(line number, text) of each line that is not blank."""
        with self.open() as f, self.reading():
            for number, line in enumerate(io.TextIOWrapper(f, encoding="utf-8"), start=1):
                if line.strip():
                    yield number, line

    def records(self) -> Iterator[tuple[int, dict]]:
        """(line number, object) of each JSON line."""
        for number, line in self.lines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ManifestError(
                    f"{self.where(number)}: not JSON ({exc.msg} at column {exc.colno})"
                ) from exc
            if not isinstance(record, dict):
                raise ManifestError(
                    f"{self.where(number)}: a JSON object per line expected, found "
                    f"{type(record).__name__}"
                )
            yield number, record

    def first_record(self) -> dict | None:
        """The first JSON line's object (None for an empty file): enough to tell formats apart."""
        for _, record in self.records():
            return record
        return None


def _kind(path: str) -> tuple[str, str | None] | None:
    """(kind, compression) by the file's name; None if it is no manifest."""
    stem, suffix = posixpath.splitext(path.lower())
    compression = COMPRESSIONS.get(suffix)
    if compression is not None:
        kind = KINDS.get(posixpath.splitext(stem)[1])
        return (kind, compression) if kind in ("json", "csv") else None
    kind = KINDS.get(suffix)
    return (kind, None) if kind else None


def _file(fs, path: str) -> ManifestFile | None:
    found = _kind(path)
    return ManifestFile(fs, path, *found) if found else None


def _expected() -> str:
    return f"{', '.join(sorted(KINDS))}; text ones also {', '.join(sorted(COMPRESSIONS))}"


def manifest_files(uri: str) -> list[ManifestFile]:
    """The manifest files ``uri`` names: the file, or those of the folder, in name order."""
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(uri)
        if fs.isdir(path):
            files = [f for p in sorted(fs.find(path)) if (f := _file(fs, p))]
            if not files:
                raise ManifestError(f"{uri}: folder holds no manifest files ({_expected()})")
            return files
        if not fs.exists(path):
            raise ManifestError(f"{uri}: manifest not found")
    except ManifestError:
        raise
    except Exception as exc:  # storage errors of any backend, named for the user
        raise ManifestError(f"{uri}: cannot be read ({type(exc).__name__}: {exc})") from exc
    found = _file(fs, path)
    if found is None:
        raise ManifestError(
            f"{uri}: unknown manifest format {posixpath.splitext(path)[1]!r}; expected one of "
            f"{_expected()}"
        )
    return [found]
