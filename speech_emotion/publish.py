"""Publishers make a run's staged rows visible to readers, all at once, exactly once.

:class:`Publisher` is what the pipeline needs from an output format. :class:`ParquetPublisher` is
today's: the staged files compacted into ``run_date=`` partitions, made visible by the run's record
in the ledger. A table format (Delta, Iceberg) is another implementation of the same protocol,
whose commit is the table's own.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Sequence
from typing import Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from .ledger import RunLedger, RunRecord, read_rows
from .schema import OUTPUT_SCHEMA

__all__ = ["Publisher", "ParquetPublisher", "ROWS_PER_FILE", "compact"]

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
        """Makes the run's prepared files visible, atomically, unless the run is committed
        already (a resume after a crash that came after the commit): then it does nothing."""
        ...

    def is_committed(self, run_id: str) -> bool:
        """Whether the output holds this run: the question a resume and ``--run-id`` ask."""
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
        names: list[str] = []

        def place(n: int) -> str:
            names.append(posixpath.join(f"run_date={run_date}", f"{run_id}-{n:05d}.parquet"))
            return self.ledger.path(names[-1])

        compact(self.ledger.fs, staged, place)
        return names

    def commit(self, record: RunRecord) -> None:
        self.ledger.write_record(record)

    def is_committed(self, run_id: str) -> bool:
        return self.ledger.is_committed(run_id)


def compact(
    fs,
    staged: Sequence[str],
    place: Callable[[int], str],
    schema: pa.Schema = OUTPUT_SCHEMA,
    constants: dict[str, object] | None = None,
) -> list[str]:
    """Streams staged files into files of ``ROWS_PER_FILE`` rows (zstd) at ``place(n)`` for the
    n-th, with ``constants`` appended as columns (a partition value the file must hold);
    returns their paths. Memory: one staged file and one row group at a time."""
    paths: list[str] = []
    writer, rows_in_file = None, 0
    try:
        for path in staged:
            table = read_rows(fs, [path], OUTPUT_SCHEMA.names)
            for name, value in (constants or {}).items():
                field = schema.field(name)
                table = table.append_column(field, pa.array([value] * table.num_rows, field.type))
            for batch in table.to_batches(max_chunksize=ROWS_PER_FILE):
                if writer is None or rows_in_file + batch.num_rows > ROWS_PER_FILE:
                    if writer is not None:
                        writer.close()
                    paths.append(place(len(paths)))
                    fs.makedirs(posixpath.dirname(paths[-1]), exist_ok=True)
                    writer = pq.ParquetWriter(paths[-1], schema, filesystem=fs, compression="zstd")
                    rows_in_file = 0
                writer.write_batch(batch)
                rows_in_file += batch.num_rows
    finally:
        if writer is not None:
            writer.close()
    return paths
