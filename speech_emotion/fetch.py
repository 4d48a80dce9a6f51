"""Reading a recording's bytes: which URIs a job may read, and reading them ahead of the decoder.

An audio reference is a URI today (any fsspec URI, or a path); every failure to read one is a
:class:`RowError` naming it. The allowed-prefix rule lives here too: a manifest may only point at
audio on its own store (its bucket, or the local disk) unless the user widens it.
"""

from __future__ import annotations

import posixpath
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from .errors import ErrorCode, RowError

__all__ = ["read_bytes", "fetch", "Prefetcher", "default_allowed_prefix", "within_prefixes"]

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
    """Whether ``uri`` lies under one of ``prefixes``, after resolving ``..`` and the like."""
    target = _normalise_uri(uri)
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


def fetch(uri: str, allowed_prefixes: Sequence[str] | None) -> bytes:
    """The bytes of ``uri`` if the job may read it; a RowError otherwise."""
    if allowed_prefixes is not None and not within_prefixes(uri, allowed_prefixes):
        raise RowError(
            ErrorCode.OUTSIDE_ALLOWED_PREFIXES,
            f"{uri} is outside the allowed input prefixes ({', '.join(allowed_prefixes)}); "
            "widen them with --allowed-prefix",
        )
    return read_bytes(uri)


def _fetch_or_error(uri: str, allowed_prefixes: Sequence[str] | None) -> bytes | RowError:
    try:
        return fetch(uri, allowed_prefixes)
    except RowError as exc:
        return exc


class Prefetcher:
    """Reads objects on threads ahead of one consumer, within a count and a byte budget.

    Object reads are latency-bound: threads fetch ahead while the caller decodes. Reads ahead are
    capped by count (``threads``) and by bytes: a 30 min WAV is 100-300 MB, so with long files only
    as many are read ahead as fit in ``max_bytes``, judged by the largest recent file.
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
        """Each object's bytes (or why not) in order."""
        window: deque[Future] = deque()
        for uri in uris:
            # The caller works while this generator waits at the yield: the reads in the window
            # are the ones running meanwhile.
            while len(window) > self._reads_ahead():
                yield self._collect(window.popleft())
            window.append(self._pool.submit(_fetch_or_error, uri, self._allowed))
        while window:
            yield self._collect(window.popleft())

    def _reads_ahead(self) -> int:
        if not self._recent_sizes:
            return 1  # nothing known yet: size the window from the first file
        fit = self._max_bytes // max(1, max(self._recent_sizes))
        return max(1, min(self._threads, fit))

    def _collect(self, read: Future) -> bytes | RowError:
        fetched = read.result()
        if isinstance(fetched, bytes):
            self._recent_sizes.append(len(fetched))
        return fetched
