"""The output dataset across runs: staging, commit records, and what earlier runs did.

Layout under OUTPUT (any fsspec URI)::

    _staging/<run_id>/            a run in progress: Ray writes here, file by file
    run_date=YYYY-MM-DD/<run_id>-NNNNN.parquet
                                  committed rows, compacted into files of sensible size
    _runs/<run_id>.json           the commit record, written last: counts, timings, files

A run counts only once its record exists. Readers and the next run consult the records, never a
directory listing, so a run that crashed is invisible until it is resumed and committed. Folders
starting with ``_`` are skipped by Spark, Hive, Athena and pyarrow's partition discovery.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import posixpath
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .schema import OUTPUT_SCHEMA, STATUS_OK

__all__ = ["OutputStore", "History", "RunRecord"]

logger = logging.getLogger(__name__)

# About 128 MB per file at ~500 bytes a row: large enough for warehouses, small enough to write
# from one process.
ROWS_PER_FILE = 250_000
_HISTORY_COLUMNS = ["id", "status", "attempt"]


@dataclass
class History:
    """What committed runs (and the run being resumed) already did, by id."""

    done: set[str] = field(default_factory=set)
    """Ids with an ok row: never processed again."""
    attempts: dict[str, int] = field(default_factory=dict)
    """Ids with only error rows: how many attempts they have had."""
    staged: set[str] = field(default_factory=set)
    """Ids already written by the run being resumed (ok or error): not done again."""


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    run_date: str
    started_at: str
    finished_at: str
    wall_s: float
    manifest: str
    schema_version: str
    rows: int
    ok: int
    errors: dict[str, int]
    skipped_done: int
    skipped_exhausted: int
    audio_s: float
    files: list[str]
    models: dict[str, str | None]

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, sort_keys=True)


class OutputStore:
    """One output dataset: where a run stages, how it commits, what earlier runs did."""

    def __init__(self, uri: str) -> None:
        import fsspec

        self.uri = uri.rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.uri)
        self.root = self.root.rstrip("/")

    def _path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def staging(self, run_id: str) -> str:
        return self._path("_staging", run_id)

    # -- runs -------------------------------------------------------------------------------

    def records(self) -> list[dict]:
        """Committed runs, oldest first."""
        folder = self._path("_runs")
        if not self.fs.exists(folder):
            return []
        paths = sorted(p for p in self.fs.ls(folder, detail=False) if p.endswith(".json"))
        return [json.loads(self.fs.cat_file(p)) for p in paths]

    def is_committed(self, run_id: str) -> bool:
        return self.fs.exists(self._path("_runs", f"{run_id}.json"))

    def uncommitted_runs(self) -> list[str]:
        """Staged runs without a record (crashed or running), oldest first."""
        folder = self._path("_staging")
        if not self.fs.exists(folder):
            return []
        runs = sorted(posixpath.basename(p.rstrip("/")) for p in self.fs.ls(folder, detail=False))
        return [run for run in runs if not self.is_committed(run)]

    def start(self, run_id: str) -> str:
        """Marks the run as started (once); returns its start time, kept across resumes."""
        marker = posixpath.join(self.staging(run_id), "_started.json")
        if self.fs.exists(marker):
            return json.loads(self.fs.cat_file(marker))["started_at"]
        started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        self.fs.makedirs(self.staging(run_id), exist_ok=True)
        self.fs.pipe_file(marker, json.dumps({"started_at": started}).encode())
        return started

    # -- what was done ------------------------------------------------------------------------

    def _read(self, paths: list[str], columns: list[str]) -> pa.Table:
        if not paths:
            return OUTPUT_SCHEMA.empty_table().select(columns)
        tables = [pq.read_table(p, columns=columns, filesystem=self.fs) for p in paths]
        return pa.concat_tables(tables)

    def committed_files(self) -> list[str]:
        return [self._path(f) for record in self.records() for f in record["files"]]

    def _staged_parquet(self, run_id: str) -> list[str]:
        folder = self.staging(run_id)
        if not self.fs.exists(folder):
            return []
        return sorted(p for p in self.fs.find(folder) if p.endswith(".parquet"))

    def staged_files(self, run_id: str) -> list[str]:
        """Readable Parquet files of a staged run; a file torn by a crash is removed."""
        good = []
        for path in self._staged_parquet(run_id):
            try:
                pq.read_metadata(path, filesystem=self.fs)
                good.append(path)
            except (OSError, pa.ArrowException):
                logger.warning("removing %s: torn by an interrupted write", path)
                self.fs.rm(path)
        return good

    def history(self, resuming: str | None = None) -> History:
        history = History()
        committed = self._read(self.committed_files(), _HISTORY_COLUMNS)
        ok = pc.equal(committed["status"], STATUS_OK)
        history.done = set(pc.filter(committed["id"], ok).to_pylist())
        failed = pc.filter(committed, pc.invert(ok))
        for clip_id, attempt in zip(
            failed["id"].to_pylist(), failed["attempt"].to_pylist(), strict=True
        ):
            if clip_id not in history.done:
                history.attempts[clip_id] = max(history.attempts.get(clip_id, 0), attempt)
        if resuming:
            staged = self._read(self.staged_files(resuming), ["id"])
            history.staged = set(staged["id"].to_pylist())
        return history

    # -- commit -------------------------------------------------------------------------------

    def compact(self, run_id: str, run_date: str) -> list[str]:
        """Streams the staged files into the run's partition, ``ROWS_PER_FILE`` rows a file.

        File names are fixed, so a commit repeated after a crash overwrites its own attempt. Torn
        files were removed by :meth:`history` before this run wrote anything, and every file
        written since was completed, so the staged files are listed, not checked again.
        """
        files: list[str] = []
        writer, rows_in_file = None, 0
        try:
            for path in self._staged_parquet(run_id):
                table = pq.read_table(path, filesystem=self.fs).select(OUTPUT_SCHEMA.names)
                table = table.cast(OUTPUT_SCHEMA)
                for batch in table.to_batches(max_chunksize=ROWS_PER_FILE):
                    if writer is None or rows_in_file + batch.num_rows > ROWS_PER_FILE:
                        if writer is not None:
                            writer.close()
                        name = posixpath.join(
                            f"run_date={run_date}", f"{run_id}-{len(files):05d}.parquet"
                        )
                        files.append(name)
                        self.fs.makedirs(posixpath.dirname(self._path(name)), exist_ok=True)
                        writer = pq.ParquetWriter(
                            self._path(name),
                            OUTPUT_SCHEMA,
                            filesystem=self.fs,
                            compression="zstd",
                        )
                        rows_in_file = 0
                    writer.write_batch(batch)
                    rows_in_file += batch.num_rows
        finally:
            if writer is not None:
                writer.close()
        return files

    def read_files(self, files: list[str], columns: list[str] | None = None) -> pa.Table:
        return self._read([self._path(f) for f in files], columns or OUTPUT_SCHEMA.names)

    def write_record(self, record: RunRecord) -> None:
        """The commit itself: one small object, written after every data file."""
        self.fs.makedirs(self._path("_runs"), exist_ok=True)
        self.fs.pipe_file(self._path("_runs", f"{record.run_id}.json"), record.to_json().encode())

    def discard_staging(self, run_id: str) -> None:
        if self.fs.exists(self.staging(run_id)):
            self.fs.rm(self.staging(run_id), recursive=True)

    def read(self, columns: list[str] | None = None) -> pa.Table:
        """Every committed row (all runs), as an analyst's loader should see them."""
        return self._read(self.committed_files(), columns or OUTPUT_SCHEMA.names)
