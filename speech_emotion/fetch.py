"""Reading a recording's bytes: which URIs a job may read, and reading them ahead of the decoder.

An audio reference is a URI (any fsspec URI, or a path), or a row of a Parquet shard that holds
the audio itself (a Hugging Face dataset): ``<shard URI>#row=<n>&column=<name>``
(:func:`embedded_ref`). Every failure to read one is a :class:`RowError` naming it. The
allowed-prefix rule lives here too: a manifest may only point at audio on its own store (its
bucket, or the local disk) unless the user widens it; a shard's rows are judged by the shard's
place.
"""

from __future__ import annotations

import posixpath
import re
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from urllib.parse import quote, unquote

from .errors import ErrorCode, RowError

__all__ = [
    "read_bytes",
    "fetch",
    "read_refs",
    "Prefetcher",
    "default_allowed_prefix",
    "within_prefixes",
    "embedded_ref",
    "parse_embedded",
    "location",
]

_EMBEDDED = re.compile(r"(?P<shard>.+)#row=(?P<row>\d+)&column=(?P<column>[^&#]+)")


def embedded_ref(shard: str, row: int, column: str) -> str:
    """The reference to the audio held in row ``row`` (0-based) of a Parquet shard's ``column``."""
    return f"{shard}#row={row}&column={quote(column, safe='')}"


def parse_embedded(ref: str) -> tuple[str, int, str] | None:
    """(shard, row, column) of an embedded reference; None for a plain URI."""
    found = _EMBEDDED.fullmatch(ref)
    if found is None:
        return None
    return found["shard"], int(found["row"]), unquote(found["column"])


def location(ref: str) -> str:
    """The file a reference reads: the URI itself, or the shard holding the row."""
    embedded = parse_embedded(ref)
    return embedded[0] if embedded else ref


# Encoded bytes read ahead of the decoder, per actor.
MAX_READ_AHEAD_BYTES = 256 * 2**20


def _normalise_uri(uri: str) -> str:
    if "://" in uri:
        scheme, path = uri.split("://", 1)
        return f"{scheme}://{posixpath.normpath(path) if path else ''}"
    return posixpath.normpath(posixpath.abspath(uri))


def default_allowed_prefix(manifest_uri: str) -> str:
    """The store the manifest is on: its bucket (object storage) or the local file system.

    One rule for both: a manifest may point anywhere its own store holds, never at another
    bucket (which the job's credentials might read) or from object storage at a worker's disk.
    """
    if "://" in manifest_uri and not manifest_uri.startswith("file://"):
        scheme, path = manifest_uri.split("://", 1)
        return f"{scheme}://{path.split('/', 1)[0]}/"
    return "/"


def within_prefixes(uri: str, prefixes: Sequence[str]) -> bool:
    """Whether ``uri`` (a shard's row: the shard) lies under one of ``prefixes``, after resolving
    ``..`` and the like."""
    target = _normalise_uri(location(uri))
    for prefix in prefixes:
        base = _normalise_uri(prefix).rstrip("/")
        if target == base or target.startswith(base + "/"):
            return True
    return False


def read_bytes(uri: str) -> bytes:
    """An object's bytes, or a RowError saying why it could not be read."""
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(uri)
        return fs.cat_file(path)
    except FileNotFoundError as exc:
        raise RowError(ErrorCode.MISSING_OBJECT, f"no such file or object: {uri}") from exc
    except IsADirectoryError as exc:
        raise RowError(ErrorCode.READ_FAILED, f"{uri} is a folder, not an audio file") from exc
    except PermissionError as exc:
        raise RowError(ErrorCode.READ_FAILED, f"access denied reading {uri}: {exc}") from exc
    except Exception as exc:  # every storage backend has its own error types
        raise RowError(
            ErrorCode.READ_FAILED, f"could not read {uri} ({type(exc).__name__}: {exc})"
        ) from exc


def fetch_check(uri: str, allowed_prefixes: Sequence[str] | None) -> None:
    """A RowError unless the job may read ``uri``."""
    if allowed_prefixes is not None and not within_prefixes(uri, allowed_prefixes):
        raise RowError(
            ErrorCode.OUTSIDE_ALLOWED_PREFIXES,
            f"{uri} is outside the allowed input prefixes ({', '.join(allowed_prefixes)}); "
            "widen them with --allowed-prefix",
        )


def fetch(uri: str, allowed_prefixes: Sequence[str] | None) -> bytes:
    """The bytes of ``uri`` if the job may read it; a RowError otherwise."""
    fetch_check(uri, allowed_prefixes)
    return read_bytes(uri)


def _fetch_or_error(uri: str, allowed_prefixes: Sequence[str] | None) -> bytes | RowError:
    try:
        return fetch(uri, allowed_prefixes)
    except RowError as exc:
        return exc


def read_refs(
    refs: Sequence[str], allowed_prefixes: Sequence[str] | None
) -> list[bytes | RowError]:
    """The audio of references that are one read: a file, or rows of one shard's column (its row
    groups read once for all of them)."""
    first = parse_embedded(refs[0])
    if first is None:
        return [_fetch_or_error(ref, allowed_prefixes) for ref in refs]
    from .embedded import read_rows

    shard, _, column = first
    rows = [int(ref.rsplit("#row=", 1)[1].split("&", 1)[0]) for ref in refs]
    try:
        fetch_check(shard, allowed_prefixes)
        found = read_rows(shard, column, rows)
    except RowError as exc:
        return [exc] * len(refs)
    return [
        value
        if isinstance(value, RowError)
        else _row_audio(shard, row, column, value, allowed_prefixes)
        for row, value in zip(rows, found, strict=True)
    ]


def _row_audio(
    shard: str,
    row: int,
    column: str,
    value: tuple[bytes | None, str | None],
    allowed_prefixes: Sequence[str] | None,
) -> bytes | RowError:
    """A row's bytes; where it holds only a path (a dataset saved without embedding its audio),
    the file at that path, relative to the shard's folder."""
    data, path = value
    if data is not None:
        return data
    if path:
        uri = path if "://" in path or path.startswith("/") else _beside(shard, path)
        return _fetch_or_error(uri, allowed_prefixes)
    return RowError(
        ErrorCode.MISSING_OBJECT,
        f"row {row} of {shard} holds no audio: its {column!r} has neither bytes nor a path",
    )


def _beside(uri: str, path: str) -> str:
    if "://" in uri:
        scheme, rest = uri.split("://", 1)
        return f"{scheme}://{posixpath.normpath(posixpath.join(posixpath.dirname(rest), path))}"
    return posixpath.normpath(posixpath.join(posixpath.dirname(uri), path))


class Prefetcher:
    """Reads objects on threads ahead of one consumer, within a count and a byte budget.

    Object reads are latency-bound: threads fetch ahead while the caller decodes. Reads ahead are
    capped by count (``threads``) and by bytes: a 30 min WAV is 100-300 MB, so with long files only
    as many are read ahead as fit in ``max_bytes``, judged by the largest recent read. Neighbouring
    rows of one Parquet shard are one read (:func:`read_refs`).
    """

    def __init__(
        self,
        threads: int,
        allowed_prefixes: Sequence[str] | None,
        max_bytes: int | None = None,
    ) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads)
        self._threads = threads
        self._allowed = allowed_prefixes
        self._max_bytes = max_bytes or MAX_READ_AHEAD_BYTES
        self._recent_sizes: deque[int] = deque(maxlen=threads)

    def __call__(self, uris: Sequence[str]) -> Iterator[bytes | RowError]:
        """Each reference's bytes (or why not) in order."""
        window: deque[Future] = deque()
        for unit in _units(uris):
            # The caller works while this generator waits at the yield: the reads in the window
            # are the ones running meanwhile.
            while len(window) > self._reads_ahead():
                yield from self._collect(window.popleft())
            window.append(self._pool.submit(read_refs, unit, self._allowed))
        while window:
            yield from self._collect(window.popleft())

    def _reads_ahead(self) -> int:
        if not self._recent_sizes:
            return 1  # nothing known yet: size the window from the first file
        fit = self._max_bytes // max(1, max(self._recent_sizes))
        return max(1, min(self._threads, fit))

    def _collect(self, read: Future) -> Iterator[bytes | RowError]:
        fetched: list[bytes | RowError] = read.result()
        if any(isinstance(f, bytes) for f in fetched):
            self._recent_sizes.append(sum(len(f) for f in fetched if isinstance(f, bytes)))
        # Handed over one by one and let go here: the caller frees each file when it is done.
        fetched.reverse()
        while fetched:
            yield fetched.pop()


def _units(refs: Sequence[str]) -> Iterator[list[str]]:
    """The references in order, neighbouring rows of one shard's column together."""
    unit: list[str] = []
    shard: tuple[str, str] | None = None
    for ref in refs:
        embedded = parse_embedded(ref)
        key = (embedded[0], embedded[2]) if embedded else None
        if unit and (key is None or key != shard):
            yield unit
            unit = []
        unit.append(ref)
        shard = key
    if unit:
        yield unit
