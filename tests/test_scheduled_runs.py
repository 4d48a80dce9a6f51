"""Scheduled runs over a growing manifest: finished rows are skipped, failures retried up to a cap,
each run writes its own files and counts only once committed, and a crashed run resumes."""

from __future__ import annotations

import shutil
import subprocess
import sys

import duckdb
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from speech_emotion.config import JobConfig
from speech_emotion.errors import ConfigError
from speech_emotion.output import open_output
from speech_emotion.pipeline import run
from speech_emotion.schema import OUTPUT_SCHEMA

from .factories import Corpus, job_config


@pytest.fixture
def corpus(tmp_path) -> Corpus:
    return Corpus(str(tmp_path / "corpus"))


def job(corpus: Corpus, output, tiny_models, **overrides) -> JobConfig:
    return job_config(corpus, output, tiny_models, mode="audio", **overrides)


def committed(output) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    for row in open_output(str(output)).read().to_pylist():
        rows.setdefault(row["id"], []).append(row)
    return rows


def test_a_nightly_run_does_only_new_rows_and_retries_failures(
    corpus, tmp_path, tiny_models, ray_cluster
):
    out = tmp_path / "labels"
    corpus.add_tones(["a", "b"]).add("broken", missing=True)
    first = run(job(corpus, out, tiny_models))
    assert (first.rows, first.ok) == (3, 2)
    first_files = {p: p.read_bytes() for p in out.glob("run_date=*/*.parquet")}

    corpus.add("c")
    second = run(job(corpus, out, tiny_models))
    assert (second.rows, second.ok, second.skipped_done) == (2, 1, 2)

    rows = committed(out)
    assert sorted(rows) == ["a", "b", "broken", "c"]
    assert [r["attempt"] for r in rows["broken"]] == [1, 2]
    assert all(len(rows[i]) == 1 for i in "abc")
    # Earlier runs' files are never rewritten.
    assert all(path.read_bytes() == data for path, data in first_files.items())
    assert len(list(out.glob("run_date=*/*.parquet"))) == 2


def test_a_row_that_keeps_failing_is_given_up_after_max_attempts(
    corpus, tmp_path, tiny_models, ray_cluster
):
    out = tmp_path / "labels"
    corpus.add("a").add("broken", missing=True)
    for _ in range(2):
        run(job(corpus, out, tiny_models, max_attempts=2))
    third = run(job(corpus, out, tiny_models, max_attempts=2))
    assert (third.rows, third.skipped_done, third.skipped_exhausted) == (0, 1, 1)
    assert [r["attempt"] for r in committed(out)["broken"]] == [1, 2]


def test_a_crashed_run_is_invisible_until_resumed_and_rows_it_wrote_are_not_redone(
    corpus, tmp_path, tiny_models, ray_cluster
):
    corpus.add_tones(["a", "b", "c", "d"])
    scratch = tmp_path / "scratch"
    run(job(corpus, scratch, tiny_models))
    finished = {r["id"]: r for r in open_output(str(scratch)).read().to_pylist()}

    # What a crash leaves behind: a started run with some rows staged and one torn file.
    out = tmp_path / "labels"
    output = open_output(str(out))
    output.ledger.start("crashed-run")
    staging = out / "_staging" / "crashed-run"
    staged = open_output(str(scratch)).read().filter(pads.field("id").isin(["a", "b"]))
    pq.write_table(staged.cast(OUTPUT_SCHEMA), staging / "part-1.parquet")
    (staging / "part-2.parquet").write_bytes(b"PAR1 torn mid-write")
    assert output.read().num_rows == 0
    assert output.ledger.uncommitted() == ["crashed-run"]

    resumed = run(job(corpus, out, tiny_models))
    assert (resumed.run_id, resumed.resumed, resumed.rows) == ("crashed-run", True, 4)
    rows = committed(out)
    assert sorted(rows) == ["a", "b", "c", "d"] and all(len(r) == 1 for r in rows.values())
    for clip_id in "ab":
        assert rows[clip_id][0]["processed_at"] == finished[clip_id]["processed_at"]
    assert output.ledger.uncommitted() == []


def test_a_committed_run_id_cannot_be_reused(corpus, tmp_path, tiny_models, ray_cluster):
    out = tmp_path / "labels"
    corpus.add("a")
    run(job(corpus, out, tiny_models, run_id="2026-11-24"))
    with pytest.raises(ConfigError, match="already committed"):
        run(job(corpus, out, tiny_models, run_id="2026-11-24"))


def test_an_analyst_reads_the_output_with_duckdb_and_pyarrow(
    corpus, tmp_path, tiny_models, ray_cluster
):
    out = tmp_path / "labels"
    corpus.add_tones(["a", "b"], language="en").add("c", language="es").add("gone", missing=True)
    run(job(corpus, out, tiny_models))
    files = f"{out}/run_date=*/*.parquet"

    by_emotion = duckdb.sql(
        f"SELECT emotion, count(*) FROM '{files}' WHERE status = 'ok' GROUP BY emotion"
    ).fetchall()
    assert sum(n for _, n in by_emotion) == 3
    by_language = dict(
        duckdb.sql(f"SELECT language, count(*) FROM '{files}' GROUP BY language").fetchall()
    )
    assert by_language == {"en": 2, "es": 1, None: 1}
    errors_by_stage = duckdb.sql(
        f"SELECT split_part(error, ':', 1) AS stage, error_code, count(*) FROM '{files}' "
        "WHERE status = 'error' GROUP BY ALL"
    ).fetchall()
    assert errors_by_stage == [("decode", "missing_object", 1)]
    top_angry = duckdb.sql(
        f"SELECT id, scores['angry'] FROM '{files}' WHERE status = 'ok' ORDER BY 2 DESC LIMIT 1"
    ).fetchall()
    assert top_angry[0][0] in {"a", "b", "c"}
    run_dates = duckdb.sql(
        f"SELECT DISTINCT run_date FROM read_parquet('{files}', hive_partitioning = true)"
    ).fetchall()
    assert len(run_dates) == 1

    dataset = pads.dataset(out, format="parquet", partitioning="hive")
    table = dataset.to_table()
    assert table.num_rows == 4 and "run_date" in table.column_names
    assert pq.read_schema(next(out.glob("run_date=*/*.parquet"))).metadata == OUTPUT_SCHEMA.metadata


def test_the_runs_command_lists_committed_and_unfinished_runs(
    corpus, tmp_path, tiny_models, ray_cluster
):
    out = tmp_path / "labels"
    corpus.add("a")
    summary = run(job(corpus, out, tiny_models))
    open_output(str(out)).ledger.start("still-running")
    listing = subprocess.run(
        [sys.executable, "-m", "speech_emotion.cli", "runs", str(out)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert summary.run_id in listing
    assert "still-running" in listing and "not committed" in listing
    shutil.rmtree(out / "_staging")


def test_the_report_command_writes_one_report_of_the_runs_asked_for(
    corpus, tmp_path, tiny_models, ray_cluster
):
    out = tmp_path / "labels"
    corpus.add("a")
    first = run(job(corpus, out, tiny_models))
    corpus.add("b")
    second = run(job(corpus, out, tiny_models))
    assert (out / "_runs" / f"{second.run_id}.html").is_file()  # written at the commit

    def report(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "speech_emotion.cli", "report", str(out), *args]
        return subprocess.run(command, capture_output=True, text=True, check=False)

    both = report("--out", str(tmp_path / "both.html"))
    assert both.returncode == 0, both.stderr
    html = (tmp_path / "both.html").read_text()
    assert "2 runs of" in html and first.run_id in html and second.run_id in html
    assert report("--run", first.run_id, "--out", str(tmp_path / "one.html")).returncode == 0
    assert second.run_id not in (tmp_path / "one.html").read_text()
    unknown = report("--run", "no-such-run", "--out", str(tmp_path / "x.html"))
    assert unknown.returncode == 2 and "no such committed run" in unknown.stderr
