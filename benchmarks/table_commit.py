"""Committing a big run to a Delta or Iceberg table: peak memory and time, by write path.

    .venv/bin/python benchmarks/table_commit.py [--rows 1000000] [--no-write]

Stages a run of synthetic segmented rows as the job's stages leave it (files of 10,000 rows), then
commits it in a fresh process per path, so each peak resident memory is that path's alone:

- ``delta`` / ``iceberg``: the job's publishers: the staged files compacted once into files of
  250,000 rows (streamed, one staged file at a time), then registered (Delta add actions,
  Iceberg ``add_files``);
- ``delta-write``: ``write_deltalake`` over a RecordBatchReader of the staged files, in one
  transaction (delta-rs writes the files itself);
- ``iceberg-append``: pyiceberg's ``Table.append``, which takes one Arrow table: the whole run.

Writes into docs/benchmarks.md between the ``tables`` markers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from speech_emotion.ledger import RunLedger, RunRecord  # noqa: E402
from speech_emotion.schema import OUTPUT_SCHEMA, TABLE_SCHEMA  # noqa: E402

PATHS = ("delta", "delta-write", "iceberg", "iceberg-append")
STAGED_ROWS_PER_FILE = 10_000
RUN_DATE = "2026-12-01"


def record(rows: int, files: list[str]) -> RunRecord:
    return RunRecord(
        run_id="synthetic",
        run_date=RUN_DATE,
        started_at=f"{RUN_DATE}T00:00:00+00:00",
        finished_at=f"{RUN_DATE}T01:00:00+00:00",
        wall_s=3600.0,
        manifest="s3://bucket/calls.jsonl",
        schema_version="2",
        rows=rows,
        ok=rows,
        errors={},
        skipped_done=0,
        skipped_exhausted=0,
        audio_s=rows * 2.5,
        files=files,
        models={"mode": "concat"},
    )


def with_run_date(batch: pa.RecordBatch) -> pa.RecordBatch:
    date = pa.array([dt.date.fromisoformat(RUN_DATE)] * batch.num_rows, pa.date32())
    return pa.RecordBatch.from_arrays([*batch.columns, date], schema=TABLE_SCHEMA)


def commit(path: str, staged: list[str], folder: str) -> None:
    """One path's commit of the staged run; prints seconds and peak MB as JSON."""
    import deltalake  # noqa: F401  (the floor: every path imports both)
    import pyiceberg.catalog.sql  # noqa: F401

    from speech_emotion.output import open_output

    rows = sum(pq.read_metadata(p).num_rows for p in staged)
    sampler = RssSampler()
    started = time.perf_counter()
    if path in ("delta", "iceberg"):
        from speech_emotion.config import OutputConfig

        uri = f"{folder}/delta" if path == "delta" else "bench.labels"
        output = open_output(
            OutputConfig(uri=uri, format=path, catalog="bench" if path == "iceberg" else None),
            create=True,
        )
        files = output.publisher.prepare("synthetic", RUN_DATE, staged)
        output.publisher.commit(record(rows, files))
    elif path == "delta-write":
        from deltalake import CommitProperties, write_deltalake
        from deltalake.transaction import Transaction

        def batches():
            for p in staged:
                for batch in pq.ParquetFile(p).iter_batches(batch_size=STAGED_ROWS_PER_FILE):
                    yield with_run_date(batch.cast(OUTPUT_SCHEMA))

        write_deltalake(
            f"{folder}/delta-write",
            pa.RecordBatchReader.from_batches(TABLE_SCHEMA, batches()),
            partition_by=["run_date"],
            commit_properties=CommitProperties(
                app_transactions=[Transaction("speech-emotion:synthetic", 1)]
            ),
        )
    elif path == "iceberg-append":
        from speech_emotion.iceberg import open_catalog, open_table

        table = open_table(open_catalog("bench"), "bench.appended", create=True)
        assert table is not None
        whole = pa.Table.from_batches(
            [
                with_run_date(b)
                for p in staged
                for b in pq.read_table(p).cast(OUTPUT_SCHEMA).to_batches()
            ]
        )
        table.append(whole, snapshot_properties={"speech-emotion.run-id": "synthetic"})
    seconds = time.perf_counter() - started
    print(json.dumps([seconds, sampler.stop(), sampler.before]))


class RssSampler:
    """The process's peak resident memory while it runs, from /proc every 5 ms (ru_maxrss
    would report the imports' own transient peak, higher than a modest commit's)."""

    def __init__(self) -> None:
        import threading

        self.before = self.peak = _rss_mb()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.wait(0.005):
            self.peak = max(self.peak, _rss_mb())

    def stop(self) -> float:
        self._done.set()
        self._thread.join()
        return max(self.peak, _rss_mb())


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    if sys.argv[1:2] == ["--commit"]:
        commit(sys.argv[2], json.loads(sys.argv[3]), sys.argv[4])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    from report_scale import synthetic_rows

    results = {}
    with tempfile.TemporaryDirectory() as folder:
        ledger = RunLedger(f"{folder}/staging")
        rows = synthetic_rows(args.rows, seed=0)
        staged = []
        for part, batch in enumerate(rows.to_batches(max_chunksize=STAGED_ROWS_PER_FILE)):
            staged.append(f"{ledger.staging('synthetic')}/part-{part:05d}.parquet")
            Path(staged[-1]).parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_batches([batch]), staged[-1])
        del rows
        env = {
            **os.environ,
            "PYICEBERG_CATALOG__BENCH__URI": f"sqlite:///{folder}/catalog.db",
            "PYICEBERG_CATALOG__BENCH__WAREHOUSE": Path(folder, "warehouse").as_uri(),
        }
        for path in PATHS:
            done = subprocess.run(
                [sys.executable, __file__, "--commit", path, json.dumps(staged), folder],
                capture_output=True,
                text=True,
                check=True,
                env=env,
            )
            results[path] = json.loads(done.stdout.strip().splitlines()[-1])
            print(path, results[path], flush=True)
    lines = [
        f"Latest run: `python benchmarks/table_commit.py --rows {args.rows}` on "
        f"{time.strftime('%Y-%m-%d')}, {platform.machine()}: one run of {args.rows:,} rows "
        f"staged in {len(staged)} files, committed to a local table by each path in a fresh "
        "process; memory sampled every 5 ms from /proc, its peak during the commit and that "
        "peak above the process's size before it (imports: Python, pyarrow, deltalake, "
        "pyiceberg).",
        "",
        "| path | seconds | peak RSS MB | above the imports MB |",
        "|---|---|---|---|",
    ]
    for path in PATHS:
        seconds, peak, before = results[path]
        lines.append(f"| `{path}` | {seconds:.1f} | {peak:.0f} | {peak - before:.0f} |")
    markdown = "\n".join(lines)
    print(markdown)
    if not args.no_write:
        from throughput import write_results

        write_results(markdown, section="tables")


if __name__ == "__main__":
    main()
