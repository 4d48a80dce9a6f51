"""One writer per output: a lease object, ``OUTPUT/_lease.json``, that a run holds while it runs.

Taken and renewed with the store's own atomic operations, never a check-then-write: on S3 a
create-if-absent (``If-None-Match: *``) and compare-and-swap on the object's ETag (``If-Match``);
on a local disk an exclusive create and a swap under a file lock. A holder renews it every third
of ``timeout_s``; one that crashed stops renewing, and after ``timeout_s`` the next run takes it
over with the same compare-and-swap (of two contenders one wins). Before committing, the holder
renews once more and refuses to commit if that fails (fencing): a run that stalled past its
timeout finds its lease gone and commits nothing over the run that took over.

Expiry is judged by the clocks of the machines involved, which must agree to within a small part
of the timeout (NTP does).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from typing import Protocol

from .errors import KnownError

__all__ = ["Holder", "Lease", "LeaseHeld", "LeaseLost", "read_holder"]

logger = logging.getLogger(__name__)

LEASE_NAME = "_lease.json"


class LeaseHeld(KnownError):
    """Another run holds the output."""


class LeaseLost(KnownError):
    """This run's lease expired and another run took the output over."""


@dataclass(frozen=True)
class Holder:
    """Who holds an output, as written in the lease object."""

    host: str
    pid: int
    since: str
    renewed_at: float
    """Unix time of the last renewal."""
    timeout_s: float
    run_id: str | None = None

    @classmethod
    def me(cls, timeout_s: float) -> Holder:
        now = time.time()
        since = dt.datetime.fromtimestamp(now, dt.timezone.utc).isoformat(timespec="seconds")
        return cls(socket.gethostname(), os.getpid(), since, now, timeout_s)

    def expired(self, now: float | None = None) -> bool:
        return (now or time.time()) > self.renewed_at + self.timeout_s

    def died_here(self) -> bool:
        """Whether it ran on this machine and its process is gone: a crash seen for certain,
        so a run re-started by hand need not wait for the timeout."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            return False
        return False

    def __str__(self) -> str:
        run = f"run {self.run_id}" if self.run_id else "a run starting"
        ago = time.time() - self.renewed_at
        return f"{run} on {self.host} (pid {self.pid}) since {self.since}, renewed {ago:.0f} s ago"

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes) -> Holder:
        return cls(**json.loads(data))


class _Objects(Protocol):
    """The atomic operations a lease needs from a store; ``tag`` identifies a version."""

    def create(self, data: bytes) -> str | None:
        """Writes if absent: the new tag, or None if something is there."""
        ...

    def swap(self, data: bytes, tag: str) -> str | None:
        """Writes if the version is still ``tag``: the new tag, or None if it changed."""
        ...

    def read(self) -> tuple[bytes, str] | None: ...

    def delete(self, tag: str) -> None:
        """Deletes if the version is still ``tag``; else leaves it."""
        ...


def _precondition_failed(exc: OSError) -> bool:
    # s3fs turns S3's 412 into FileExistsError for a create, and into a generic OSError (with
    # the botocore error as its cause) for a swap; 409 is a concurrent conditional write.
    text = f"{exc} {exc.__cause__}"
    return (
        isinstance(exc, FileExistsError)
        or "PreconditionFailed" in text
        or "pre-conditions" in text
        or "ConditionalRequestConflict" in text
    )


class _S3Objects:
    def __init__(self, fs, path: str) -> None:
        self.fs = fs
        self.bucket, self.key = path.split("/", 1)

    def _put(self, data: bytes, **condition: str) -> str | None:
        try:
            answer = self.fs.call_s3(
                "put_object", Bucket=self.bucket, Key=self.key, Body=data, **condition
            )
        except OSError as exc:
            if _precondition_failed(exc):
                return None
            raise
        return answer["ETag"]

    def create(self, data: bytes) -> str | None:
        return self._put(data, IfNoneMatch="*")

    def swap(self, data: bytes, tag: str) -> str | None:
        return self._put(data, IfMatch=tag)

    def read(self) -> tuple[bytes, str] | None:
        try:
            answer = self.fs.call_s3("get_object", Bucket=self.bucket, Key=self.key)
        except FileNotFoundError:
            return None
        return _read_body(self.fs, answer["Body"]), answer["ETag"]

    def delete(self, tag: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            try:
                self.fs.call_s3("delete_object", Bucket=self.bucket, Key=self.key, IfMatch=tag)
            except OSError as exc:
                if not _precondition_failed(exc):
                    raise


def _read_body(fs, body) -> bytes:
    from fsspec.asyn import sync

    async def read() -> bytes:
        async with body as stream:
            return await stream.read()

    return sync(fs.loop, read)


class _LocalObjects:
    """A file; swaps happen under an exclusive lock on a sibling file, which every run on the
    machines sharing this disk takes the same way."""

    def __init__(self, path: str) -> None:
        self.path = path

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.path + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    @staticmethod
    def _tag(data: bytes) -> str:
        import hashlib

        return hashlib.sha256(data).hexdigest()

    def create(self, data: bytes) -> str | None:
        # Written aside, then linked in: the link is the exclusive create, and nobody ever reads
        # a lease half written.
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        pending = f"{self.path}.{os.getpid()}"
        with open(pending, "wb") as f:
            f.write(data)
        try:
            os.link(pending, self.path)
        except FileExistsError:
            return None
        finally:
            os.remove(pending)
        return self._tag(data)

    def swap(self, data: bytes, tag: str) -> str | None:
        with self._locked():
            current = self.read()
            if current is None or current[1] != tag:
                return None
            pending = f"{self.path}.{os.getpid()}"
            with open(pending, "wb") as f:
                f.write(data)
            os.replace(pending, self.path)
        return self._tag(data)

    def read(self) -> tuple[bytes, str] | None:
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        return data, self._tag(data)

    def delete(self, tag: str) -> None:
        with self._locked():
            current = self.read()
            if current is not None and current[1] == tag:
                os.remove(self.path)


def _objects(fs, root: str) -> _Objects | None:
    path = f"{root.rstrip('/')}/{LEASE_NAME}"
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    if "s3" in protocols or "s3a" in protocols:
        return _S3Objects(fs, path)
    if "file" in protocols or "local" in protocols:
        return _LocalObjects(path)
    return None


def read_holder(fs, root: str) -> Holder | None:
    """Who holds the output now (an expired holder included), or None."""
    return _holder_in(_objects(fs, root))


def _holder_in(objects: _Objects | None) -> Holder | None:
    found = objects.read() if objects else None
    return Holder.decode(found[0]) if found else None


class Lease:
    """This process's hold on one output: ``with Lease(...) as lease:`` takes it (or raises
    :class:`LeaseHeld`), renews it in the background, and releases it at the end."""

    def __init__(self, fs, root: str, uri: str, timeout_s: float) -> None:
        self._objects = _objects(fs, root)
        self._uri = uri
        self._holder = Holder.me(timeout_s)
        self._tag: str | None = None
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._guard = threading.Lock()
        self._renewer = threading.Thread(target=self._renew_until_stopped, daemon=True)

    def __enter__(self) -> Lease:
        if self._objects is None:
            logger.warning(
                "%s: this store has no conditional writes the job can use, so nothing stops two "
                "runs writing to it at once; run one at a time",
                self._uri,
            )
            return self
        self._take()
        self._renewer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _take(self) -> None:
        data = self._holder.encode()
        self._tag = self._objects.create(data)  # type: ignore[union-attr]
        if self._tag is not None:
            return
        current = self._objects.read()  # type: ignore[union-attr]
        if current is None:  # released meanwhile
            self._tag = self._objects.create(data)  # type: ignore[union-attr]
        else:
            holder = Holder.decode(current[0])
            if not (holder.expired() or holder.died_here()):
                raise LeaseHeld(
                    f"{self._uri} is being written by {holder}; wait for it to finish, or, "
                    f"if it crashed, for its lease to expire ({holder.timeout_s:g} s after "
                    "its last renewal), then run again"
                )
            logger.warning("taking over %s from %s, which is gone", self._uri, holder)
            self._tag = self._objects.swap(data, current[1])  # type: ignore[union-attr]
        if self._tag is None:
            raise LeaseHeld(f"{self._uri} was just taken by another run; run again later")

    def claim(self, run_id: str) -> None:
        """Names the run in the lease, for whoever looks (``speech-emotion runs``)."""
        self._holder = replace(self._holder, run_id=run_id)
        self._renew()

    def _renew(self) -> bool:
        if self._objects is None:
            return True
        with self._guard:
            if self._lost.is_set() or self._tag is None:
                return False
            self._holder = replace(self._holder, renewed_at=time.time())
            tag = self._objects.swap(self._holder.encode(), self._tag)
            if tag is None:
                self._lost.set()
                logger.error("%s: this run's lease was taken over by another run", self._uri)
                return False
            self._tag = tag
            return True

    def _renew_until_stopped(self) -> None:
        interval = self._holder.timeout_s / 3
        while not self._stop.wait(interval):
            try:
                if not self._renew():
                    return
            except OSError:  # a store outage: the next tick tries again, the commit checks
                logger.warning("%s: could not renew the lease", self._uri, exc_info=True)

    def confirm(self) -> None:
        """Renews now, before a commit: raises :class:`LeaseLost` if another run took over."""
        if not self._renew():
            current = _holder_in(self._objects)
            raise LeaseLost(
                f"{self._uri}: this run's lease expired and "
                f"{current or 'another run'} took over; not committed (the run that took over "
                "finishes the work)"
            )

    def release(self) -> None:
        self._stop.set()
        if self._renewer.is_alive():
            self._renewer.join(timeout=5)
        if self._objects is None or self._tag is None or self._lost.is_set():
            return
        with self._guard, contextlib.suppress(OSError):
            self._objects.delete(self._tag)
            self._tag = None
