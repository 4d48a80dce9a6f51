"""How the run report scales: time and memory to build it, and its size, for a run of many rows.

    .venv/bin/python benchmarks/report_scale.py [--rows 1000000] [--no-write]

Writes a committed run of synthetic segmented recordings (50 segments each, two channels, a few
error rows) to a local output with the job's own publisher, then builds its report as the job
does at commit. Writes into docs/benchmarks.md between the ``report`` markers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import write_results  # noqa: E402

from speech_emotion.emotion import EN_LABELS  # noqa: E402
from speech_emotion.ledger import RunRecord  # noqa: E402
from speech_emotion.output import open_output  # noqa: E402
from speech_emotion.report import write_report  # noqa: E402
from speech_emotion.schema import OUTPUT_SCHEMA  # noqa: E402

SEGMENTS = 50


def synthetic_rows(rows: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    recordings = rows // SEGMENTS
    recording = np.repeat(np.arange(recordings), SEGMENTS)
    index = np.tile(np.arange(SEGMENTS // 2), recordings * 2)
    channel = np.tile(np.repeat([0, 1], SEGMENTS // 2), recordings)
    n = len(recording)
    start = index * 6.0 + channel * 3.0
    probs = rng.dirichlet(np.ones(len(EN_LABELS)), n).astype(np.float32)
    top = probs.argmax(axis=1)
    failed = rng.random(n) < 0.001
    labels = np.array(EN_LABELS)
    columns = {
        "id": pa.array([f"call-{r:07d}" for r in recording]),
        "audio": pa.array([f"s3://bucket/calls/call-{r:07d}.wav" for r in recording]),
        "status": pa.array(np.where(failed, "error", "ok")),
        "error_code": pa.array(np.where(failed, "unsupported_language", None)),
        "error": pa.array(
            np.where(failed, "transcribe: language 'xx' is not one Whisper knows", None)
        ),
        "channel": pa.array(channel, pa.int32()),
        "segment_index": pa.array(index, pa.int32()),
        "segment_count": pa.array(np.full(n, SEGMENTS), pa.int32()),
        "start_s": pa.array(start),
        "end_s": pa.array(start + 2.5),
        "duration_s": pa.array(np.full(n, 2.5)),
        "recording_duration_s": pa.array(np.full(n, SEGMENTS * 3.0)),
        "language": pa.array(np.where(recording % 5 == 0, "es", "en")),
        "emotion": pa.array(np.where(failed, None, labels[top])),
        "emotion_score": pa.array(np.where(failed, np.nan, probs.max(axis=1)), pa.float32()),
        "mode": pa.array(np.full(n, "concat")),
        "attempt": pa.array(np.ones(n, np.int32)),
        "run_id": pa.array(np.full(n, "synthetic")),
        "processed_at": pa.array(np.full(n, dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc))),
    }
    table = pa.table(columns)
    missing = [f for f in OUTPUT_SCHEMA if f.name not in table.column_names]
    for f in missing:
        table = table.append_column(f, pa.nulls(n, f.type))
    return table.select(OUTPUT_SCHEMA.names).cast(OUTPUT_SCHEMA)


def build(folder: str) -> None:
    """Builds the report of the run in ``folder``; prints seconds, peak MB and bytes as JSON."""
    output = open_output(folder)
    [record] = output.publisher.runs()
    started = time.perf_counter()
    path = write_report(output, record)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps([seconds, peak, Path(path).stat().st_size]))


def main() -> None:
    if sys.argv[1:2] == ["--build"]:
        build(sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        output = open_output(folder)
        table = synthetic_rows(args.rows, args.seed)
        files = []
        for part, batch in enumerate(table.to_batches(max_chunksize=250_000)):
            name = f"run_date=2026-12-01/synthetic-{part:05d}.parquet"
            Path(folder, name).parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_batches([batch]), Path(folder, name))
            files.append(name)
        record = RunRecord(
            run_id="synthetic",
            run_date="2026-12-01",
            started_at="2026-12-01T00:00:00+00:00",
            finished_at="2026-12-01T01:00:00+00:00",
            wall_s=3600.0,
            manifest="s3://bucket/calls.jsonl",
            schema_version="2",
            rows=table.num_rows,
            ok=table.num_rows,
            errors={},
            skipped_done=0,
            skipped_exhausted=0,
            audio_s=table.num_rows * 2.5,
            files=files,
            models={"mode": "concat"},
        )
        output.ledger.write_record(record)
        del table
        # Built in a fresh process, so its peak memory is the report's alone.
        done = subprocess.run(
            [sys.executable, __file__, "--build", folder],
            capture_output=True,
            text=True,
            check=True,
        )
        seconds, peak, size = json.loads(done.stdout.strip().splitlines()[-1])
    markdown = (
        f"Latest run: `python benchmarks/report_scale.py --rows {args.rows}` on "
        f"{time.strftime('%Y-%m-%d')}, {platform.machine()}: a run of {args.rows:,} rows "
        f"({args.rows // SEGMENTS:,} two-channel recordings of {SEGMENTS} segments) took "
        f"**{seconds:.1f} s** to report, in a process whose peak resident memory was "
        f"**{peak:.0f} MB** (Python, pyarrow and Bokeh included); the report is "
        f"**{size / 1e6:.2f} MB**."
    )
    print(markdown)
    if not args.no_write:
        write_results(markdown, section="report")


if __name__ == "__main__":
    main()
