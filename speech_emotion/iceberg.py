"""Apache Iceberg output (pyiceberg): one snapshot per run, its summary carrying the run.

OUTPUT names the table, ``NAMESPACE.TABLE``, in a catalog configured as pyiceberg's users
configure them (``.pyiceberg.yaml``, ``PYICEBERG_CATALOG__<NAME>__*`` variables) and chosen with
``--catalog NAME``. Where pyiceberg's default catalog is not configured, an embedded one serves:
SQLite plus a local warehouse under :data:`EMBEDDED_CATALOG`, for one machine only. The table is
created on first use, partitioned by identity on ``run_date``. Layout under its location::

    metadata/                                   the table's metadata: what readers see
    data/run_date=2026-11-24/<run_id>-00000.parquet
                                                a run's rows, registered by its snapshot
    _staging/, _runs/                           the run ledger (ledger.py), unless --staging

A run's compacted files are written once and registered with ``add_files`` in one snapshot whose
summary holds the run's id and record. Exactly once, as Iceberg's own streaming sinks do it: load
the table, look for the run id among the current snapshot's ancestors, build the append on that
same table, commit; the append asserts its base snapshot, so a commit landing meanwhile makes it
fail, and the loop reloads and looks again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import posixpath
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from .errors import ConfigError
from .ledger import RunLedger, RunRecord, read_rows
from .publish import compact
from .schema import OUTPUT_SCHEMA, PARTITION_COLUMN, TABLE_SCHEMA

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table
    from pyiceberg.table.snapshots import Snapshot

__all__ = ["EMBEDDED_CATALOG", "IcebergPublisher", "RUN_ID_KEY", "RECORD_KEY", "open_catalog"]

logger = logging.getLogger(__name__)

EMBEDDED_CATALOG = "~/.speech_emotion/iceberg"
"""The embedded catalog's folder: ``catalog.db`` (SQLite) and the warehouse beside it."""
RUN_ID_KEY = "speech-emotion.run-id"
RECORD_KEY = "speech-emotion.run"
"""Snapshot summary keys: the run's id, and its record (JSON)."""
# pyiceberg does not retry a failed commit itself; each of ours reloads and re-checks first.
_COMMIT_ATTEMPTS = 5


def open_catalog(name: str | None) -> Catalog:
    """The named catalog (None: pyiceberg's default), or the embedded one where the default is
    not configured. A named catalog that is not configured is a mistake, not a fallback."""
    from pyiceberg.catalog import load_catalog
    from pyiceberg.utils.config import Config

    config = Config()  # read now: pyiceberg's module-level copy is read once, at import
    default = config.get_default_catalog_name()
    properties = config.get_catalog_config(name or default)
    if properties is None:
        if name not in (None, default):
            raise ConfigError(
                f"catalog={name!r} is invalid: expected a catalog configured in .pyiceberg.yaml "
                f"or by PYICEBERG_CATALOG__{name.upper()}__* variables"
            )
        folder = Path(EMBEDDED_CATALOG).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        properties = {
            "type": "sql",
            "uri": f"sqlite:///{folder / 'catalog.db'}",
            "warehouse": folder.as_uri(),
        }
        logger.info("no Iceberg catalog configured: the embedded one in %s", folder)
    return load_catalog(name or default, **properties)  # type: ignore[arg-type]


def open_table(catalog: Catalog, identifier: str, *, create: bool) -> Table | None:
    """The table; created where ``create`` (partitioned by ``run_date``), else None if absent."""
    from pyiceberg.exceptions import NoSuchTableError, TableAlreadyExistsError

    try:
        return catalog.load_table(identifier)
    except NoSuchTableError:
        if not create:
            return None
    catalog.create_namespace_if_not_exists(identifier.rpartition(".")[0])
    try:
        with (
            catalog.create_table_transaction(identifier, TABLE_SCHEMA) as creation,
            creation.update_spec() as spec,
        ):
            spec.add_identity(PARTITION_COLUMN)
    except TableAlreadyExistsError:
        pass  # another writer created it meanwhile
    return catalog.load_table(identifier)


class IcebergPublisher:
    """An Iceberg table; a run counts once its snapshot is an ancestor of the current one."""

    def __init__(self, catalog: Catalog, identifier: str, ledger: RunLedger) -> None:
        self.catalog = catalog
        self.identifier = identifier
        self.ledger = ledger

    def _table(self, create: bool = False) -> Table | None:
        return open_table(self.catalog, self.identifier, create=create)

    # -- what readers and later runs see ------------------------------------------------------

    def runs(self) -> list[RunRecord]:
        table = self._table()
        if table is None:
            return []
        records = [_summary(s, RECORD_KEY) for s in _lineage(table)]
        return [RunRecord.from_json(r) for r in reversed(records) if r]

    def is_committed(self, run_id: str) -> bool:
        table = self._table()
        return table is not None and _snapshot_of(table, run_id) is not None

    def committed(self, columns: Sequence[str]) -> pa.Table:
        schema = pa.schema([OUTPUT_SCHEMA.field(name) for name in columns])
        table = self._table()
        if table is None:
            return schema.empty_table()
        return (
            table.scan(selected_fields=tuple(columns)).to_arrow().select(list(columns)).cast(schema)
        )

    def read(self, files: Sequence[str], columns: Sequence[str]) -> pa.Table:
        fs, root = self._location()
        return read_rows(fs, [posixpath.join(root, f) for f in files], columns)

    def _location(self, table: Table | None = None) -> tuple[object, str]:
        import fsspec

        table = table or self._table()
        if table is None:
            raise ConfigError(f"output={self.identifier!r} is invalid: no such Iceberg table")
        fs, root = fsspec.core.url_to_fs(table.location())
        return fs, root.rstrip("/")

    # -- a run's commit -----------------------------------------------------------------------

    def prepare(self, run_id: str, run_date: str, staged: Sequence[str]) -> list[str]:
        """The run's files, relative to the table's location: written under ``data/`` from the
        staged ones, or, for a run committed already, the ones its snapshot added."""
        table = self._table(create=True)
        assert table is not None
        done = _snapshot_of(table, run_id)
        if done is not None:
            committed = _summary(done, RECORD_KEY)
            return RunRecord.from_json(committed).files if committed else []
        fs, root = self._location(table)
        names: list[str] = []

        def place(n: int) -> str:
            names.append(f"data/{PARTITION_COLUMN}={run_date}/{run_id}-{n:05d}.parquet")
            return posixpath.join(root, names[-1])

        # add_files takes a file's partition from its column statistics: the value is inside.
        date = dt.date.fromisoformat(run_date)
        compact(fs, staged, place, TABLE_SCHEMA, {PARTITION_COLUMN: date})
        return names

    def commit(self, record: RunRecord) -> None:
        """One snapshot: the run's files, with its id and record in the summary; then the
        ledger's copy of the record (for the report). A run committed already is not again."""
        from pyiceberg.exceptions import CommitFailedException

        if not record.files:
            logger.info("run %s: no rows, no snapshot", record.run_id)
            return
        summary = {RUN_ID_KEY: record.run_id, RECORD_KEY: _compact_json(record)}
        failure: Exception | None = None
        for _ in range(_COMMIT_ATTEMPTS):
            table = self._table(create=True)
            assert table is not None
            if _snapshot_of(table, record.run_id) is not None:
                logger.warning(
                    "run %s is committed in %s already; not committing it again",
                    record.run_id,
                    self.identifier,
                )
                break
            location = table.location().rstrip("/")
            try:
                table = _without_retries(_evolve(table))
                table.add_files(
                    [f"{location}/{name}" for name in record.files],
                    snapshot_properties=summary,
                    check_duplicate_files=True,
                )
                break
            except CommitFailedException as exc:  # a concurrent commit: reload and look again
                logger.warning(
                    "run %s: commit to %s failed (%s); retrying",
                    record.run_id,
                    self.identifier,
                    exc,
                )
                failure = exc
        else:
            raise RuntimeError(
                f"run {record.run_id}: its commit to {self.identifier} failed "
                f"{_COMMIT_ATTEMPTS} times against concurrent writers ({failure}); nothing of it "
                "is in the table; run the job again to resume it"
            )
        self.ledger.write_record(record)


def _lineage(table: Table) -> Iterator[Snapshot]:
    """The current snapshot and its ancestors, newest first (a rolled-back run is not one)."""
    from pyiceberg.table.snapshots import ancestors_of

    yield from ancestors_of(table.current_snapshot(), table.metadata)


def _snapshot_of(table: Table, run_id: str) -> Snapshot | None:
    return next((s for s in _lineage(table) if _summary(s, RUN_ID_KEY) == run_id), None)


def _summary(snapshot: Snapshot, key: str) -> str | None:
    return snapshot.summary[key] if snapshot.summary is not None else None


def _without_retries(table: Table) -> Table:
    """The table, as this process sees it, with pyiceberg's own commit retries off.

    pyiceberg (0.12) rebases a failed append onto the new head and commits it again, without
    asking whether the commit that won was this run's own: a second driver of the same run would
    add its files twice. Here a failed commit raises instead, and the caller's loop reloads and
    looks for the run first. Only the loaded copy changes; the table's properties do not."""
    from pyiceberg.table import TableProperties

    properties = {**table.metadata.properties, TableProperties.COMMIT_NUM_RETRIES: "0"}
    table.metadata = table.metadata.model_copy(update={"properties": properties})
    return table


def _evolve(table: Table) -> Table:
    """Adds the columns the table lacks (a newer schema version) as optional ones, in place."""
    present = set(table.schema().column_names)
    missing = [name for name in TABLE_SCHEMA.names if name not in present]
    if not missing:
        return table
    logger.warning("adding columns %s to %s", missing, table.name())
    with table.update_schema() as update:
        update.union_by_name(TABLE_SCHEMA)
    return table.refresh()


def _compact_json(record: RunRecord) -> str:
    """A few KB: every snapshot's summary is in every metadata file after it."""
    return json.dumps(dataclasses.asdict(record), sort_keys=True, separators=(",", ":"))
