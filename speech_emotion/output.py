"""One output: its run ledger and its publisher, opened from the output settings.

``open_output("s3://bucket/labels").read()`` gives every committed row, as an analyst's loader
should see them (never a crashed run's). The format picks the publisher: Parquet files plus
records (:mod:`publish`), a Delta table (:mod:`delta`) or an Iceberg table (:mod:`iceberg`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from .config import OutputConfig
from .errors import ConfigError
from .lease import Holder, Lease, read_holder
from .ledger import RunLedger
from .publish import ParquetPublisher, Publisher
from .runs import HISTORY_COLUMNS, History
from .schema import OUTPUT_SCHEMA

__all__ = ["Output", "open_output"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Output:
    config: OutputConfig
    ledger: RunLedger
    publisher: Publisher

    def read(self, columns: Sequence[str] | None = None) -> pa.Table:
        """Every committed row (all runs)."""
        return self.publisher.committed(columns or OUTPUT_SCHEMA.names)

    def lease(self, timeout_s: float) -> Lease:
        """This process's hold on the output while a run writes to it (:mod:`lease`)."""
        return Lease(self.ledger.fs, self.ledger.root, self.ledger.uri, timeout_s)

    def holder(self) -> Holder | None:
        """Who holds the output now, if anyone (an expired holder included)."""
        return read_holder(self.ledger.fs, self.ledger.root)

    def history(self, resuming: str | None = None) -> History:
        """What committed runs did, and what the run being resumed has staged."""
        staged = self.ledger.read_staged(resuming, HISTORY_COLUMNS) if resuming else None
        return History.of(self.publisher.committed(HISTORY_COLUMNS), staged)

    def uncommitted(self) -> list[str]:
        """Runs staged but not committed (crashed or running), oldest first."""
        return [r for r in self.ledger.uncommitted() if not self.publisher.is_committed(r)]

    def settle(self) -> list[str]:
        """Finishes the bookkeeping of runs that a crash stopped right after their commit (the
        table's came; the ledger's record and cleanup did not), without a second commit; returns
        their ids. Nothing to do for Parquet, whose commit is the ledger's record."""
        settled = [r for r in self.ledger.uncommitted() if self.publisher.is_committed(r)]
        records = {r.run_id: r for r in self.publisher.runs()} if settled else {}
        for run_id in settled:
            logger.warning("run %s is committed; finishing its bookkeeping", run_id)
            if run_id in records:
                self.ledger.write_record(records[run_id])
            self.ledger.discard(run_id)
        return settled


def open_output(config: OutputConfig | str, *, create: bool = False) -> Output:
    """The output; ``create``: an Iceberg table that does not exist yet is created (the job's
    first use) rather than refused (listing runs of a mistyped name)."""
    if isinstance(config, str):
        config = OutputConfig(uri=config)
    if config.format == "delta":
        from .delta import DeltaPublisher

        ledger = RunLedger(config.staging or config.uri)
        return Output(config, ledger, DeltaPublisher(config.uri, ledger))
    if config.format == "iceberg":
        from .iceberg import IcebergPublisher, open_catalog, open_table

        catalog = open_catalog(config.catalog)
        table = open_table(catalog, config.uri, create=create)
        if table is None and config.staging is None:
            raise ConfigError(
                f"output={config.uri!r} is invalid: no such table in Iceberg catalog "
                f"{catalog.name!r}"
            )
        ledger = RunLedger(config.staging or table.location())  # type: ignore[union-attr]
        return Output(config, ledger, IcebergPublisher(catalog, config.uri, ledger))
    ledger = RunLedger(config.uri)
    return Output(config, ledger, ParquetPublisher(ledger))
