"""Delta Lake output (delta-rs): one table version per run, carrying the run's id and record.

OUTPUT is the table's location (any URI delta-rs opens: a path, ``s3://``, ``gs://``,
``az://``), credentials from the standard environment. Layout::

    OUTPUT/_delta_log/                              the log: what readers see, and nothing else
    OUTPUT/run_date=2026-11-24/<run_id>-00000.parquet
                                                    a run's rows, registered by its commit
    OUTPUT/_staging/, OUTPUT/_runs/                 the run ledger (ledger.py), unless --staging

A run's compacted files are written once, beside the table's, and registered in one commit (add
actions) that carries the application transaction ``speech-emotion:<run_id>`` (version 1) and
the run's record in its commit info. The transaction is the idempotency key: a resumed run that
finds it makes no second commit, and delta-rs refuses a concurrent commit of the same one. On S3
the log is written with put-if-absent (delta-rs >= 0.23): no lock service is needed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import posixpath
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from .ledger import RunLedger, RunRecord, read_rows
from .publish import compact
from .schema import OUTPUT_SCHEMA, PARTITION_COLUMN, TABLE_SCHEMA

if TYPE_CHECKING:
    from deltalake import DeltaTable

__all__ = ["DeltaPublisher", "app_id", "RECORD_KEY"]

logger = logging.getLogger(__name__)

RECORD_KEY = "speech_emotion.run"
"""The commit-info key holding the run's record."""
# Concurrent appends of other runs are rebased by delta-rs itself; this bounds our own reloads,
# each of which re-checks whether the run got committed meanwhile.
_COMMIT_ATTEMPTS = 5


def app_id(run_id: str) -> str:
    """The run's application transaction id (Spark's ``txnAppId``); its version is always 1."""
    return f"speech-emotion:{run_id}"


class DeltaPublisher:
    """A Delta table partitioned by ``run_date``; a run counts once its version is in the log."""

    def __init__(self, uri: str, ledger: RunLedger) -> None:
        import fsspec

        self.uri = uri.rstrip("/")
        self.ledger = ledger
        self.fs, root = fsspec.core.url_to_fs(self.uri)
        self.root = root.rstrip("/")

    def _table(self) -> DeltaTable | None:
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        # Not DeltaTable.is_deltatable: like history(), it keeps Python's GIL while it lists,
        # which hangs on an S3 served from this process (moto's, in tests).
        try:
            return DeltaTable(self.uri)
        except TableNotFoundError:
            return None

    def _create(self) -> DeltaTable:
        from deltalake import DeltaTable, Schema

        table = self._table()
        if table is None:
            table = DeltaTable.create(
                self.uri,
                Schema.from_arrow(TABLE_SCHEMA),
                partition_by=[PARTITION_COLUMN],
                mode="ignore",  # another writer's creation meanwhile is fine
                description="speech_emotion annotations (speech_emotion/schema.py)",
            )
        return table

    # -- what readers and later runs see ------------------------------------------------------

    def runs(self) -> list[RunRecord]:
        """From the commit info of each version still in the log, oldest first.

        Read from the ``_delta_log/*.json`` files directly: ``DeltaTable.history()`` lists the
        log with ``start-after``, which some S3 implementations (moto) hang on. Versions whose
        log files the table's log retention (30 days by default) has removed are not listed.
        """
        log = posixpath.join(self.root, "_delta_log")
        self.fs.invalidate_cache(log)  # delta-rs writes the log, not this (caching) filesystem
        if not self.fs.exists(log):
            return []
        records = []
        for path in sorted(p for p in self.fs.ls(log, detail=False) if p.endswith(".json")):
            for line in self.fs.cat_file(path).decode().splitlines():
                info = json.loads(line).get("commitInfo") if line.strip() else None
                if info and RECORD_KEY in info:
                    records.append(RunRecord.from_json(json.dumps(info[RECORD_KEY])))
        return records

    def is_committed(self, run_id: str) -> bool:
        table = self._table()
        return table is not None and table.transaction_version(app_id(run_id)) is not None

    def committed(self, columns: Sequence[str]) -> pa.Table:
        schema = pa.schema([OUTPUT_SCHEMA.field(name) for name in columns])
        table = self._table()
        if table is None:
            return schema.empty_table()
        rows = pa.table(table.to_pyarrow_table(columns=list(columns)))
        return rows.select(list(columns)).cast(schema)

    def read(self, files: Sequence[str], columns: Sequence[str]) -> pa.Table:
        return read_rows(self.fs, [posixpath.join(self.root, f) for f in files], columns)

    # -- a run's commit -----------------------------------------------------------------------

    def prepare(self, run_id: str, run_date: str, staged: Sequence[str]) -> list[str]:
        """The run's files, relative to the table: written here from the staged ones, or, for
        a run committed already, the ones its version registered (never rewritten)."""
        table = self._table()
        if table is not None and table.transaction_version(app_id(run_id)) is not None:
            return _files_of(table, run_id)
        names: list[str] = []

        def place(n: int) -> str:
            names.append(f"{PARTITION_COLUMN}={run_date}/{run_id}-{n:05d}.parquet")
            return posixpath.join(self.root, names[-1])

        # The partition value lives in the log, as Delta writers keep it, not in the files.
        compact(self.fs, staged, place)
        return names

    def commit(self, record: RunRecord) -> None:
        """One version: the run's files, its transaction and its record; then the ledger's copy
        of the record (for the report). A run committed already is not committed again."""
        from deltalake.exceptions import CommitFailedError
        from deltalake.transaction import CommitProperties, Transaction

        if not record.files:
            logger.info("run %s: no rows, no table version", record.run_id)
            return
        actions = [self._add(name, record.run_date) for name in record.files]
        properties = CommitProperties(
            custom_metadata={RECORD_KEY: dataclasses.asdict(record)},
            app_transactions=[Transaction(app_id(record.run_id), 1)],
        )
        failure: Exception | None = None
        for _ in range(_COMMIT_ATTEMPTS):
            table = self._create()
            if table.transaction_version(app_id(record.run_id)) is not None:
                logger.warning(
                    "run %s is committed in %s already; not committing it again",
                    record.run_id,
                    self.uri,
                )
                break
            _evolve(table)
            try:
                table.create_write_transaction(
                    actions,
                    "append",
                    TABLE_SCHEMA,
                    partition_by=[PARTITION_COLUMN],
                    commit_properties=properties,
                )
                break
            except CommitFailedError as exc:  # a concurrent commit: reload and look again
                logger.warning(
                    "run %s: commit to %s failed (%s); retrying", record.run_id, self.uri, exc
                )
                failure = exc
        else:
            raise RuntimeError(
                f"run {record.run_id}: its commit to {self.uri} failed {_COMMIT_ATTEMPTS} times "
                f"against concurrent writers ({failure}); nothing of it is in the table; run the "
                "job again to resume it"
            )
        self.ledger.write_record(record)

    def _add(self, name: str, run_date: str):
        from deltalake.transaction import AddAction

        path = posixpath.join(self.root, name)
        return AddAction(
            path=name,
            size=self.fs.size(path),
            partition_values={PARTITION_COLUMN: run_date},
            modification_time=int(time.time() * 1000),
            data_change=True,
            stats=file_stats(pq.read_metadata(path, filesystem=self.fs)),
        )


def _files_of(table: DeltaTable, run_id: str) -> list[str]:
    """The files a committed run registered, by their names (``<run_id>-NNNNN.parquet``)."""
    own = re.compile(rf"{re.escape(run_id)}-\d{{5}}\.parquet")
    paths = pa.table(table.get_add_actions(flatten=True)).column("path").to_pylist()
    return sorted(p for p in paths if own.fullmatch(posixpath.basename(p)))


def _evolve(table: DeltaTable) -> None:
    """Adds the columns the table lacks (a newer schema version), nullable: older rows have
    none. Its own version, before the run's."""
    from deltalake import Field, Schema

    present = {field.name for field in table.schema().fields}
    missing = [f.with_nullable(True) for f in TABLE_SCHEMA if f.name not in present]
    if missing:
        logger.warning("adding columns %s to %s", [f.name for f in missing], table.table_uri)
        fields: list[Field] = list(Schema.from_arrow(pa.schema(missing)).fields)
        table.alter.add_columns(fields)


def file_stats(metadata: pq.FileMetaData) -> str:
    """A data file's Delta statistics: its row count, null counts of its flat columns, and
    bounds of its integer ones (exact in Parquet's statistics, unlike truncated strings or
    floats with NaN), from the Parquet footer: nothing is read again."""
    nulls: dict[str, int] = {}
    lows: dict[str, int] = {}
    highs: dict[str, int] = {}
    for j in range(metadata.num_columns):
        name = metadata.schema.column(j).path
        if name not in OUTPUT_SCHEMA.names:
            continue  # a leaf of a nested column (scores)
        stats = [metadata.row_group(r).column(j).statistics for r in range(metadata.num_row_groups)]
        if stats and all(s is not None and s.has_null_count for s in stats):
            nulls[name] = sum(s.null_count for s in stats)
        if (
            pa.types.is_integer(OUTPUT_SCHEMA.field(name).type)
            and stats
            and all(s is not None and s.has_min_max for s in stats)
        ):
            lows[name] = min(s.min for s in stats)
            highs[name] = max(s.max for s in stats)
    return json.dumps(
        {"numRecords": metadata.num_rows, "minValues": lows, "maxValues": highs, "nullCount": nulls}
    )
