"""The run ledger and the Parquet publisher, on a local folder: records read back as written (old
ones too), a crash's partial recordings are dropped from staging, staged files are compacted into
few full ones, and files of an older schema still read."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from speech_emotion import publish
from speech_emotion.ledger import RunLedger, RunRecord, read_rows
from speech_emotion.publish import ParquetPublisher
from speech_emotion.schema import OUTPUT_SCHEMA

from .factories import clip_rows, error_row, table


def record(run_id: str, **overrides) -> RunRecord:
    values = {
        "run_id": run_id,
        "run_date": "2026-11-24",
        "started_at": "2026-11-24T00:00:00+00:00",
        "finished_at": "2026-11-24T00:01:00+00:00",
        "wall_s": 60.0,
        "manifest": "m.jsonl",
        "schema_version": "2",
        "rows": 3,
        "recordings": 2,
        "ok": 2,
        "errors": {"missing_object": 1},
        "skipped_done": 0,
        "skipped_exhausted": 0,
        "audio_s": 12.5,
        "files": ["run_date=2026-11-24/r-00000.parquet"],
        "models": {"mode": "audio"},
    }
    return RunRecord(**{**values, **overrides})


def stage(ledger: RunLedger, run_id: str, name: str, rows: list[dict]) -> None:
    ledger.start(run_id)
    pq.write_table(table(OUTPUT_SCHEMA, rows), f"{ledger.staging(run_id)}/{name}.parquet")


def test_a_record_reads_back_as_it_was_written(tmp_path):
    ledger = RunLedger(str(tmp_path))
    ledger.write_record(record("r1"))
    assert ledger.records() == [record("r1")]
    assert ledger.is_committed("r1") and not ledger.is_committed("r2")


def test_a_record_of_schema_version_1_still_reads(tmp_path):
    ledger = RunLedger(str(tmp_path))
    old = json.loads(record("old").to_json())
    del old["recordings"]
    old["retired_field"] = 1
    (tmp_path / "_runs").mkdir()
    (tmp_path / "_runs" / "old.json").write_text(json.dumps(old))
    [read] = ledger.records()
    assert read.recordings is None and read.rows == 3


def test_a_started_run_is_uncommitted_until_its_record_exists(tmp_path):
    ledger = RunLedger(str(tmp_path))
    started = ledger.start("r1")
    assert ledger.start("r1") == started  # kept across resumes
    assert ledger.uncommitted() == ["r1"]
    ledger.write_record(record("r1"))
    assert ledger.uncommitted() == []


def test_a_torn_staged_file_is_removed_and_the_rest_kept(tmp_path):
    ledger = RunLedger(str(tmp_path))
    stage(ledger, "r1", "part-1", clip_rows("a"))
    (tmp_path / "_staging" / "r1" / "part-2.parquet").write_bytes(b"PAR1 torn mid-write")
    assert [p.rsplit("/", 1)[1] for p in ledger.staged_files("r1")] == ["part-1.parquet"]
    assert not (tmp_path / "_staging" / "r1" / "part-2.parquet").exists()


def test_dropping_partial_recordings_keeps_every_other_staged_row(tmp_path):
    ledger = RunLedger(str(tmp_path))
    stage(ledger, "r1", "part-1", clip_rows("whole", 2) + clip_rows("cut", 3)[:1])
    stage(ledger, "r1", "part-2", clip_rows("cut", 3)[1:2] + [error_row("failed")])
    stage(ledger, "r1", "part-3", clip_rows("other"))
    untouched = (tmp_path / "_staging" / "r1" / "part-3.parquet").stat().st_mtime_ns
    ledger.drop_staged("r1", {"cut"})
    left = ledger.read_staged("r1", ["id", "segment_index"]).to_pylist()
    assert sorted((r["id"], r["segment_index"]) for r in left) == [
        ("failed", None),
        ("other", 0),
        ("whole", 0),
        ("whole", 1),
    ]
    assert (tmp_path / "_staging" / "r1" / "part-3.parquet").stat().st_mtime_ns == untouched


def test_many_small_staged_files_are_compacted_into_few_full_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(publish, "ROWS_PER_FILE", 4)
    ledger = RunLedger(str(tmp_path))
    for part in range(5):
        stage(ledger, "r1", f"part-{part}", [error_row(f"{part}-{i}") for i in range(2)])
    publisher = ParquetPublisher(ledger)
    files = publisher.prepare("r1", "2026-11-24", ledger.staged_files("r1"))
    sizes = [pq.read_metadata(tmp_path / f).num_rows for f in files]
    assert sizes == [4, 4, 2]
    assert files[0] == "run_date=2026-11-24/r1-00000.parquet"
    assert pq.read_schema(tmp_path / files[0]).metadata == OUTPUT_SCHEMA.metadata
    assert publisher.read(files, ["id"]).num_rows == 10
    # Nothing is visible until the record is written.
    assert publisher.committed(["id"]).num_rows == 0
    publisher.commit(record("r1", files=files))
    assert publisher.committed(["id"]).num_rows == 10


def test_files_of_an_older_schema_read_with_the_new_columns_null(tmp_path):
    old_schema = pa.schema([f for f in OUTPUT_SCHEMA if f.name not in ("channel", "segment_count")])
    old = table(OUTPUT_SCHEMA, clip_rows("a")).select(old_schema.names)
    pq.write_table(old, tmp_path / "old.parquet")
    got = read_rows(None, [str(tmp_path / "old.parquet")], ["id", "channel", "segment_count"])
    assert got.to_pylist() == [{"id": "a", "channel": None, "segment_count": None}]
