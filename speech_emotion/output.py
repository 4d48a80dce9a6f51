"""One output: its run ledger and its publisher, opened from the output settings.

``open_output("s3://bucket/labels").read()`` gives every committed row, as an analyst's loader
should see them (never a crashed run's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from .config import OutputConfig
from .ledger import RunLedger
from .publish import ParquetPublisher, Publisher
from .runs import HISTORY_COLUMNS, History
from .schema import OUTPUT_SCHEMA

__all__ = ["Output", "open_output"]


@dataclass(frozen=True)
class Output:
    config: OutputConfig
    ledger: RunLedger
    publisher: Publisher

    def read(self, columns: Sequence[str] | None = None) -> pa.Table:
        """Every committed row (all runs)."""
        return self.publisher.committed(columns or OUTPUT_SCHEMA.names)

    def history(self, resuming: str | None = None) -> History:
        """What committed runs did, and what the run being resumed has staged."""
        staged = self.ledger.read_staged(resuming, HISTORY_COLUMNS) if resuming else None
        return History.of(self.publisher.committed(HISTORY_COLUMNS), staged)


def open_output(config: OutputConfig | str) -> Output:
    if isinstance(config, str):
        config = OutputConfig(uri=config)
    ledger = RunLedger(config.uri)
    return Output(config, ledger, ParquetPublisher(ledger))
