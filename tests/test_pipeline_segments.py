"""Long recordings end to end on Ray, from and to a local S3: one row per speech segment with its
place, channel, transcript and emotion; short clips stay whole; a silent recording is one error
row; and the rows answer an analyst's questions about emotion over time."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from speech_emotion.config import DecodeConfig, ResourceConfig
from speech_emotion.output import open_output
from speech_emotion.pipeline import run
from speech_emotion.runs import audit

from .factories import RATE_HZ, Corpus, job_config, speech, wav

INTERVIEW = speech(
    [f"a{i:02d}" for i in range(10)], [0.9, 1.1, 0.7, 1.4, 0.8, 1.0, 1.2, 0.6, 0.9, 0.5]
)
CALL = speech(
    ["a00", "b01", "a02", "b03", "a04", "b05", "a06", "b07", "a08", "b09"],
    [0.7, 0.9, 0.8, 1.1, 0.6, 1.0, 0.9, 0.7, 0.8, 0.5],
    channels=[0, 1] * 5,
)


@pytest.fixture(scope="module")
def corpus(s3) -> Corpus:
    corpus = Corpus(s3.url("segments"))
    corpus.add("interview", INTERVIEW.wav(), text="a transcript of the whole interview")
    corpus.add("call", CALL.wav(8000))
    corpus.add("silent", wav(40.0, freq_hz=0.0))
    corpus.add("short", speech(["b02"], [0.5]).wav())
    corpus.add("missing", missing=True)
    return corpus


def annotate(corpus, s3, tiny_models, name: str, **decode) -> tuple:
    output = s3.url(f"segments/labels-{name}")
    config = job_config(
        corpus,
        output,
        tiny_models,
        decode=DecodeConfig(**decode),
        resources=ResourceConfig(batch_size=4, decode_batch_size=2, cpu_workers=2),
    )
    summary = run(config)
    rows = open_output(output).read()
    return summary, rows, output


@pytest.fixture(scope="module")
def mixed(corpus, s3, tiny_models, ray_cluster):
    return annotate(corpus, s3, tiny_models, "mix")


@pytest.fixture(scope="module")
def split(corpus, s3, tiny_models, ray_cluster):
    return annotate(corpus, s3, tiny_models, "split", channels="split")


def by_id(rows) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in sorted(rows.to_pylist(), key=lambda r: (r["channel"] or 0, r["start_s"])):
        out.setdefault(row["id"], []).append(row)
    return out


def test_a_long_recording_is_one_row_per_sentence_where_the_sentences_are(mixed):
    summary, rows, _ = mixed
    interview = by_id(rows)["interview"]
    assert [r["segment_index"] for r in interview] == list(range(10))
    assert {(r["segment_count"], r["channel"], r["status"]) for r in interview} == {
        (10, None, "ok")
    }
    for row, (_, start, end) in zip(interview, INTERVIEW.spans, strict=True):
        assert row["start_s"] * RATE_HZ <= start and end <= row["end_s"] * RATE_HZ
        assert row["start_s"] * RATE_HZ == int(row["start_s"] * RATE_HZ)
        assert row["duration_s"] == pytest.approx(row["end_s"] - row["start_s"])
        assert row["recording_duration_s"] == pytest.approx(len(INTERVIEW.samples) / RATE_HZ)
        # A manifest transcript is the whole recording's: each segment is transcribed.
        assert row["transcript_source"] == "whisper"
    assert summary.recordings == 5 and summary.rows == len(rows)


def test_short_clips_stay_whole_and_failures_are_one_row_each(mixed):
    _, rows, _ = mixed
    recordings = by_id(rows)
    (short,) = recordings["short"]
    assert (short["channel"], short["segment_index"], short["segment_count"]) == (None, 0, 1)
    assert short["start_s"] == 0.0 and short["end_s"] == short["duration_s"]
    (silent,) = recordings["silent"]
    assert (silent["status"], silent["error_code"], silent["segment_index"]) == (
        "error",
        "no_speech",
        None,
    )
    assert silent["error"].startswith("decode: no speech found in 40.0 s")
    (missing,) = recordings["missing"]
    assert missing["error_code"] == "missing_object"
    assert audit(rows).broken == {} and audit(rows).whole == set(recordings)


def test_split_channels_put_each_speakers_sentences_on_their_channel(split):
    _, rows, _ = split
    call = by_id(rows)["call"]
    for channel in (0, 1):
        mine = [r for r in call if r["channel"] == channel]
        assert [r["segment_index"] for r in mine] == list(range(5))
        for row, (start, end) in zip(mine, CALL.on(channel), strict=True):
            assert row["start_s"] * RATE_HZ <= start + 1024 and end - 1024 <= row["end_s"] * RATE_HZ
    assert {r["segment_count"] for r in call} == {10}
    # A short recording split into channels is a whole clip per channel.
    (short,) = by_id(rows)["short"]
    assert (short["channel"], short["segment_count"]) == (0, 1)


def test_an_analyst_gets_emotion_over_time_and_shares_weighted_by_duration(mixed):
    _, rows, _ = mixed
    labels = rows  # noqa: F841 - DuckDB reads it by the name the README's queries use
    shares = duckdb.sql(
        """
        SELECT id, emotion, sum(duration_s) / sum(sum(duration_s)) OVER (PARTITION BY id) AS share
        FROM labels WHERE status = 'ok' GROUP BY id, emotion
        """
    ).fetchall()
    per_recording: dict[str, float] = {}
    for recording, _, share in shares:
        per_recording[recording] = per_recording.get(recording, 0.0) + share
    assert per_recording.keys() == {"interview", "call", "short"}
    assert np.allclose(list(per_recording.values()), 1.0)
    timeline = duckdb.sql(
        """
        SELECT segment_index, start_s, end_s, emotion, emotion_score FROM labels
        WHERE id = 'interview' AND status = 'ok' ORDER BY start_s
        """
    ).fetchall()
    assert [t[0] for t in timeline] == list(range(10))


def test_a_run_resumed_with_a_recording_staged_in_part_redoes_it_whole_once(
    mixed, corpus, s3, tiny_models
):
    import pyarrow.parquet as pq

    from speech_emotion.schema import OUTPUT_SCHEMA

    _, done, _ = mixed
    output = s3.url("segments/labels-resumed")
    ledger = open_output(output).ledger
    ledger.start("crashed")
    # What a crash can leave: the interview's first four segments staged, the rest not.
    interview = [r for r in done.to_pylist() if r["id"] == "interview" and r["segment_index"] < 4]
    short = [r for r in done.to_pylist() if r["id"] == "short"]
    staged = pa.Table.from_pylist(interview + short, schema=OUTPUT_SCHEMA)
    with ledger.fs.open(f"{ledger.staging('crashed')}/part-1.parquet", "wb") as f:
        pq.write_table(staged, f)
    summary, rows, _ = annotate(corpus, s3, tiny_models, "resumed")
    assert (summary.run_id, summary.resumed) == ("crashed", True)
    recordings = by_id(rows)
    assert [r["segment_index"] for r in recordings["interview"]] == list(range(10))
    # The whole recording staged before the crash was kept as it was, not made again.
    assert recordings["short"][0]["processed_at"] == short[0]["processed_at"]
    assert audit(rows).broken == {}


def test_the_run_record_says_what_each_stage_did_and_the_report_sits_beside_it(mixed, s3):
    summary, rows, output = mixed
    results = open_output(output)
    [run] = results.publisher.runs()
    decode, models, write = (run.stages[s] for s in ("decode", "models", "write"))
    assert decode["recordings"] == 5 and models["recordings"] == pytest.approx(5)
    assert models["clips"] == run.rows and models["errors"] == run.rows - run.ok
    assert models["audio_s"] == pytest.approx(summary.audio_s, abs=1e-3)
    assert models["whisper_s"] > 0 and models["emotion_s"] > 0
    assert models["busy_s"] >= models["whisper_s"] + models["emotion_s"]
    assert decode["segment_s"] > 0 and decode["busy_s"] > 0 and write["rows_out"] >= 1
    assert run.options["decode"]["segment"]["mode"] == "auto"
    report = results.ledger.fs.cat_file(results.ledger.path("_runs", f"{run.run_id}.html"))
    assert b"<h2>Emotion over time</h2>" in report and b"no_speech (1 rows)" in report
