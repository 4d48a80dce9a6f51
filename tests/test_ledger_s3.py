"""The run ledger on object storage, where the driver's filesystem caches listings: files that
Ray's workers stage after the driver first looked are still found and read (a resumed run
looks first, to drop the recordings its crash left half done)."""

from __future__ import annotations

import io

import pyarrow.parquet as pq

from speech_emotion.ledger import RunLedger, read_rows
from speech_emotion.schema import OUTPUT_SCHEMA

from .factories import clip_rows, table


def test_a_resumed_run_reads_the_files_workers_staged_after_its_first_look(s3):
    import boto3

    ledger = RunLedger(s3.url("ledger-s3/labels"))
    ledger.start("r1")
    assert ledger.staged_files("r1") == []  # the resumed run's first look, listing the folder
    buffer = io.BytesIO()
    pq.write_table(table(OUTPUT_SCHEMA, clip_rows("a", 2)), buffer)
    # A worker's write: another process, another client, unseen by the driver's filesystem.
    key = "ledger-s3/labels/_staging/r1/part-0.parquet"
    boto3.client("s3").put_object(Bucket=s3.bucket, Key=key, Body=buffer.getvalue())

    staged = ledger.staged_files("r1", check=False)
    assert staged == [f"{s3.bucket}/{key}"]
    assert read_rows(ledger.fs, staged, ["id"])["id"].to_pylist() == ["a", "a"]
