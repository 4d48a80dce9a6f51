"""The run ledger: where each run of an output stands, kept beside the output (any fsspec URI).

Layout under OUTPUT::

    _staging/<run_id>/            a run in progress: Ray writes here, file by file
    _staging/<run_id>/_started.json
                                  when the run first started (kept across resumes)
    _runs/<run_id>.json           the run's record, written once the run is committed
    _runs/<run_id>.html           its report (report.py), written after the record
    _lease.json                   the run writing the output now (lease.py)

Folders starting with ``_`` are skipped by Spark, Hive, Athena and pyarrow's partition discovery,
so nothing here is ever mistaken for output rows. What makes committed rows visible to readers is
the publisher's business (:mod:`publish`); the ledger only keeps the runs' own state.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import posixpath
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .schema import OUTPUT_SCHEMA

__all__ = ["RunLedger", "RunRecord", "read_rows"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunRecord:
    """What a committed run did: counts, timings, models, and the files holding its rows."""

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
    models: dict[str, Any]
    recordings: int | None = None
    """Manifest rows the run annotated (absent from records of schema version 1)."""
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    """What each stage (decode, models, write) did: busy, CPU and span seconds and rows from Ray
    Data's statistics; audio seconds, Whisper's and the emotion model's time, recordings from
    the stages' own counts (of this process's share, when the run was resumed)."""
    options: dict[str, Any] = field(default_factory=dict)
    """The run's configuration, as the command line set it."""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> RunRecord:
        """A record as written, by this version or an older one; unknown keys are ignored."""
        data = json.loads(text)
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


def read_rows(fs, paths: Sequence[str], columns: Sequence[str]) -> pa.Table:
    """``columns`` of output rows from Parquet files, as :data:`OUTPUT_SCHEMA` types them.

    Files of an older schema version lack the columns added since: those come back null.
    """
    schema = pa.schema([OUTPUT_SCHEMA.field(name) for name in columns])
    tables = []
    for path in paths:
        with pq.ParquetFile(path, filesystem=fs) as file:  # one open: the footer read once
            present = set(file.schema_arrow.names)
            table = file.read(columns=[c for c in columns if c in present])
        for name in columns:
            if name not in present:
                table = table.append_column(name, pa.nulls(table.num_rows, schema.field(name).type))
        tables.append(table.select(list(columns)).cast(schema))
    return pa.concat_tables(tables) if tables else schema.empty_table()


class RunLedger:
    """The runs of one output: which are staged, started when, committed with what record."""

    def __init__(self, uri: str) -> None:
        import fsspec

        self.uri = uri.rstrip("/")
        self.fs, root = fsspec.core.url_to_fs(self.uri)
        self.root = root.rstrip("/")

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    # -- runs in progress ---------------------------------------------------------------------

    def staging(self, run_id: str) -> str:
        """The folder the run's rows are written to before it commits."""
        return self.path("_staging", run_id)

    def start(
        self, run_id: str, settings: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any] | None]:
        """Marks the run as started (once), with the settings its rows depend on; returns its
        start time and those first settings (None if not recorded), kept across resumes."""
        marker = posixpath.join(self.staging(run_id), "_started.json")
        if self.fs.exists(marker):
            mark = json.loads(self.fs.cat_file(marker))
            return mark["started_at"], mark.get("settings")
        started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        self.fs.makedirs(self.staging(run_id), exist_ok=True)
        mark = {"started_at": started, "settings": settings}
        self.fs.pipe_file(marker, json.dumps(mark, sort_keys=True).encode())
        return started, settings

    def uncommitted(self) -> list[str]:
        """Staged runs without a record (crashed or running), oldest first."""
        folder = self.path("_staging")
        if not self.fs.exists(folder):
            return []
        runs = sorted(posixpath.basename(p.rstrip("/")) for p in self.fs.ls(folder, detail=False))
        return [run for run in runs if not self.is_committed(run)]

    def _staged_parquet(self, run_id: str) -> list[str]:
        folder = self.staging(run_id)
        # Ray's workers write here, not this (caching) filesystem: a listing s3fs kept from
        # before they wrote (a resumed run's checks) hides their files from its reads.
        self.fs.invalidate_cache(folder)
        if not self.fs.exists(folder):
            return []
        return sorted(p for p in self.fs.find(folder) if p.endswith(".parquet"))

    def staged_files(self, run_id: str, *, check: bool = True) -> list[str]:
        """Readable Parquet files of a staged run; a file torn by a crash is removed. Without
        ``check``, only listed: for files this process wrote since it checked."""
        if not check:
            return self._staged_parquet(run_id)
        good = []
        for path in self._staged_parquet(run_id):
            try:
                pq.read_metadata(path, filesystem=self.fs)
                good.append(path)
            except (OSError, pa.ArrowException):
                logger.warning("removing %s: torn by an interrupted write", path)
                self.fs.rm(path)
        return good

    def read_staged(self, run_id: str, columns: Sequence[str]) -> pa.Table:
        return read_rows(self.fs, self.staged_files(run_id), columns)

    def drop_staged(self, run_id: str, ids: Collection[str]) -> None:
        """Removes every staged row of these recordings, so they can be done again whole.

        A crash can leave part of a recording's clips staged. Each file is rewritten without them
        under a name the run does not read, the original removed, and the new one renamed in:
        a crash in between loses staged rows (done again) but never doubles them.
        """
        if not ids:
            return
        drop = pa.array(sorted(ids), pa.string())
        for path in self._staged_parquet(run_id):
            ids_in_file = pq.read_table(path, columns=["id"], filesystem=self.fs)["id"]
            if not pc.any(pc.is_in(ids_in_file, value_set=drop)).as_py():
                continue
            table = pq.read_table(path, filesystem=self.fs)
            keep = pc.invert(pc.is_in(table["id"], value_set=drop))
            pending = path + ".pruned"
            pq.write_table(table.filter(keep), pending, filesystem=self.fs)
            self.fs.rm(path)
            self.fs.mv(pending, path)
        logger.warning(
            "run %s: dropped the staged rows of %d incomplete recordings", run_id, len(ids)
        )

    def discard(self, run_id: str) -> None:
        if self.fs.exists(self.staging(run_id)):
            self.fs.rm(self.staging(run_id), recursive=True)

    # -- committed runs -----------------------------------------------------------------------

    def _record_path(self, run_id: str) -> str:
        return self.path("_runs", f"{run_id}.json")

    def report_path(self, run_id: str) -> str:
        return self.path("_runs", f"{run_id}.html")

    def is_committed(self, run_id: str) -> bool:
        return self.fs.exists(self._record_path(run_id))

    def records(self) -> list[RunRecord]:
        """Committed runs, oldest first."""
        folder = self.path("_runs")
        if not self.fs.exists(folder):
            return []
        paths = sorted(p for p in self.fs.ls(folder, detail=False) if p.endswith(".json"))
        return [RunRecord.from_json(self.fs.cat_file(p)) for p in paths]

    def write_record(self, record: RunRecord) -> None:
        """One small object, written after every data file of the run."""
        self.fs.makedirs(self.path("_runs"), exist_ok=True)
        self.fs.pipe_file(self._record_path(record.run_id), record.to_json().encode())
