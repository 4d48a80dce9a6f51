"""Publishers make a run's staged rows visible to readers, all at once, exactly once.

:class:`Publisher` is what the pipeline needs from an output format. :class:`ParquetPublisher` is
today's: the staged files compacted into ``run_date=`` partitions, made visible by the run's record
in the ledger. A table format (Delta, Iceberg) is another implementation of the same protocol,
whose commit is the table's own.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from typing import Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from .ledger import RunLedger, RunRecord, read_rows
from .schema import OUTPUT_SCHEMA

__all__ = ["Publisher", "ParquetPublisher", "ROWS_PER_FILE"]

# About 128 MB per file at ~500 bytes a row: large enough for warehouses, small enough to write
# from one process.
ROWS_PER_FILE = 250_000


class Publisher(Protocol):
    """What the job needs from an output format."""

    def runs(self) -> list[RunRecord]:
        """The committed runs, oldest first."""
        ...

    def committed(self, columns: Sequence[str]) -> pa.Table:
        """These columns of every committed row: what readers see, and what later runs skip."""
        ...

    def prepare(self, run_id: str, run_date: str, staged: Sequence[str]) -> list[str]:
        """Writes a run's staged rows where they will live, still invisible; returns the files.

        Safe to repeat after a crash: a repeat rewrites the same files.
        """
        ...

    def read(self, files: Sequence[str], columns: Sequence[str]) -> pa.Table:
        """These columns of the rows in prepared files, to check before committing."""
        ...

    def commit(self, record: RunRecord) -> None:
        """Makes the run's prepared files visible, atomically."""
        ...


class ParquetPublisher:
    """A Hive-partitioned Parquet dataset; a run's rows count once its ledger record exists.

    Readers and the next run consult the records, never a directory listing, so a run that
    crashed before its record was written is invisible until it is resumed and committed.
    """

    def __init__(self, ledger: RunLedger) -> None:
        self.ledger = ledger

    def runs(self) -> list[RunRecord]:
        return self.ledger.records()

    def committed(self, columns: Sequence[str]) -> pa.Table:
        return self.read([f for record in self.runs() for f in record.files], columns)

    def read(self, files: Sequence[str], columns: Sequence[str]) -> pa.Table:
        return read_rows(self.ledger.fs, [self.ledger.path(f) for f in files], columns)

    def prepare(self, run_id: str, run_date: str, staged: Sequence[str]) -> list[str]:
        """Streams the staged files into the run's partition, ``ROWS_PER_FILE`` rows a file.

        File names are fixed, so a commit repeated after a crash overwrites its own attempt.
        """
        fs = self.ledger.fs
        files: list[str] = []
        writer, rows_in_file = None, 0
        try:
            for path in staged:
                table = read_rows(fs, [path], OUTPUT_SCHEMA.names)
                for batch in table.to_batches(max_chunksize=ROWS_PER_FILE):
                    if writer is None or rows_in_file + batch.num_rows > ROWS_PER_FILE:
                        if writer is not None:
                            writer.close()
                        name = posixpath.join(
                            f"run_date={run_date}", f"{run_id}-{len(files):05d}.parquet"
                        )
                        files.append(name)
                        fs.makedirs(posixpath.dirname(self.ledger.path(name)), exist_ok=True)
                        writer = pq.ParquetWriter(
                            self.ledger.path(name),
                            OUTPUT_SCHEMA,
                            filesystem=fs,
                            compression="zstd",
                        )
                        rows_in_file = 0
                    writer.write_batch(batch)
                    rows_in_file += batch.num_rows
        finally:
            if writer is not None:
                writer.close()
        return files

    def commit(self, record: RunRecord) -> None:
        self.ledger.write_record(record)
